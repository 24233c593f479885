"""Configurations: the one place for HiFiC's numbers, the architecture's (ModelConfig) and
training's (TrainingRecipe: what is learned; TrainingRun: how a run is operated).

The full-size numbers are those of the paper (see HIFIC_SPEC.md); small presets keep the
same topology at reduced width so that tests and CPU runs share the full model's code path.
"""

from __future__ import annotations

import dataclasses
import json
import math


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Widths and sizes of E, G, the hyperprior and D.

    The generator mirrors the encoder: its head and residual blocks use the encoder's last
    width, and its four upsampling stages use the encoder's other widths in reverse.
    """

    latent_channels: int = 220  # C_y
    encoder_channels: tuple[int, ...] = (60, 120, 240, 480, 960)
    residual_blocks: int = 9
    hyper_channels: int = 320
    discriminator_condition_channels: int = 12
    discriminator_channels: tuple[int, ...] = (64, 128, 256, 512)
    num_scales: int = 64
    scale_min: float = 0.11
    scale_max: float = 256.0
    norm_epsilon: float = 1e-3
    # How h_s is evaluated when coding (hific_tf/coding/entropy_coding.py): "integer", exact integer
    # arithmetic, so that files decode on any machine; "float", as trained and as the
    # authors' code does (for models imported from their graphs).
    hyper_synthesis: str = "integer"
    # E's and G's normalization (docs/ablations.md): "channel", the paper's ChannelNorm, per
    # pixel over the channels; "instance", per image and channel over the spatial axes;
    # "batch", Keras batch normalization (moving statistics at inference). D keeps its
    # spectral norm.
    normalization: str = "channel"
    # D's condition: "latent", the paper's (y_hat through conv 3x3, LeakyReLU and nearest
    # upsampling to the image size, concatenated with the image); "none", the image alone.
    discriminator_condition: str = "latent"

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_channels", tuple(self.encoder_channels))
        object.__setattr__(self, "discriminator_channels", tuple(self.discriminator_channels))
        if len(self.encoder_channels) != 5:
            raise ValueError(
                "encoder_channels needs 5 widths (a 7x7 conv and four stride-2 convs), "
                f"got {self.encoder_channels}")
        if len(self.discriminator_channels) != 4:
            raise ValueError(
                f"discriminator_channels needs 4 widths, got {self.discriminator_channels}")
        for name in ("latent_channels", "residual_blocks", "hyper_channels",
                     "discriminator_condition_channels", "num_scales"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.scale_min < self.scale_max:
            raise ValueError("need 0 < scale_min < scale_max")
        if self.hyper_synthesis not in ("integer", "float"):
            raise ValueError(f"hyper_synthesis must be 'integer' or 'float', "
                             f"got {self.hyper_synthesis!r}")
        for name, choices in (("normalization", NORMALIZATIONS),
                              ("discriminator_condition", DISCRIMINATOR_CONDITIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, "
                                 f"got {getattr(self, name)!r}")

    @property
    def whole_image_normalization(self) -> bool:
        """True when a pixel of E's or G's output depends on the whole image (instance
        normalization), so that neither can be computed tile by tile."""
        return self.normalization == "instance"

    @property
    def generator_channels(self) -> tuple[int, ...]:
        """Head width followed by the four upsampling widths."""
        return (self.encoder_channels[-1], *reversed(self.encoder_channels[:-1]))

    @property
    def latent_stride(self) -> int:
        """Downsampling factor from the image to y (16)."""
        return 2 ** (len(self.encoder_channels) - 1)

    @property
    def pad_multiple(self) -> int:
        """Image sides are padded to a multiple of this (16, as the authors' coder does) so
        that y is exactly H/16 x W/16; z is ceil(y / 4), and h_s's outputs are cropped."""
        return self.latent_stride

    def log_scale_grid(self) -> tuple[float, float]:
        """(ln scale_min, the step between neighbouring ln scales): the scale of index i is
        exp(ln scale_min + i * step), for whole and fractional i."""
        low = math.log(self.scale_min)
        return low, (math.log(self.scale_max) - low) / max(self.num_scales - 1, 1)

    def scale_table(self) -> list[float]:
        """The Gaussian conditional's scales, exp(linspace(ln scale_min, ln scale_max,
        num_scales)): what the hyperprior's scale function gives at whole indexes, the table
        y's coding tables are built on, and what the importer checks a graph's rule against."""
        low, step = self.log_scale_grid()
        return [math.exp(low + index * step) for index in range(self.num_scales)]

    def network_differences(self, other: ModelConfig) -> list[str]:
        """Where `other`'s E, G or hyperprior differ from these (what loads from weights; D
        starts fresh and h_s's evaluation when coding is free), as "field VALUE, not
        MINE", for one-line refusals."""
        return [f"{f.name} {getattr(other, f.name)!r}, not {getattr(self, f.name)!r}"
                for f in dataclasses.fields(self)
                if f.name not in _NOT_LOADED and getattr(other, f.name) != getattr(self, f.name)]

    def to_json(self) -> str:
        """Canonical JSON, used in checkpoints and in the model identifier. The ablation
        switches are left out at their defaults (and read so when absent), so that the
        files and identifiers of models made before them stay as they were."""
        fields = dataclasses.asdict(self)
        for name in _ABLATION_SWITCHES:
            if fields[name] == getattr(ModelConfig, name):
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of to_json; an unknown key is a ValueError naming it."""
        return _from_fields(cls, json.loads(text), "model config")


NORMALIZATIONS = ("channel", "instance", "batch")
DISCRIMINATOR_CONDITIONS = ("latent", "none")
_ABLATION_SWITCHES = ("normalization", "discriminator_condition")  # docs/ablations.md
# Fields that no weights of E, G or the hyperprior depend on.
_NOT_LOADED = ("hyper_synthesis", "discriminator_condition_channels", "discriminator_channels",
               "discriminator_condition")

MODEL_PRESETS: dict[str, ModelConfig] = {
    # The paper's model: E 7.42 M, G 156.77 M, hyperprior 17.28 M, D 2.80 M parameters.
    "hific": ModelConfig(),
    # Same topology at a width that codes a photo in well under a second on a laptop CPU;
    # for tests and for demonstrating the pipeline.
    "tiny": ModelConfig(
        latent_channels=16,
        encoder_channels=(8, 16, 24, 32, 48),
        residual_blocks=1,
        hyper_channels=24,
        discriminator_condition_channels=4,
        discriminator_channels=(8, 16, 32, 32),
    ),
    # The paper's topology at about 6 M parameters (E 0.58 M, G 3.9 M, P 1.55 M), sized so
    # that a few thousand training steps fit a few hours of a 2-core CPU.
    "small": ModelConfig(
        latent_channels=64,
        encoder_channels=(24, 48, 96, 160, 192),
        residual_blocks=5,
        hyper_channels=96,
        discriminator_condition_channels=12,
        discriminator_channels=(32, 64, 128, 256),
    ),
}


def model_preset(name: str) -> ModelConfig:
    """Returns a named preset, or raises ValueError listing the known names."""
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; choose one of {', '.join(MODEL_PRESETS)}"
        ) from None


STAGES = ("mselpips", "hific")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")


def _from_fields(cls: type, fields: object, what: str) -> object:
    """`cls(**fields)` for a JSON object; an unknown key or a non-object is one ValueError."""
    if not isinstance(fields, dict):
        raise ValueError(f"a {what} must be a JSON object, got {type(fields).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys: {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(known))}")
    try:
        return cls(**fields)
    except TypeError as error:  # a value of the wrong type, e.g. a string for a number
        raise ValueError(f"bad {what}: {error}") from None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A piecewise-constant factor, as in the authors' configurations: `values[0]` before
    `boundaries[0]`, `values[i]` from step `boundaries[i - 1]` on."""

    values: tuple[float, ...]
    boundaries: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        object.__setattr__(self, "boundaries", tuple(int(b) for b in self.boundaries))
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(f"a schedule needs one value more than boundaries, got values "
                             f"{list(self.values)} and boundaries {list(self.boundaries)}")
        if any(b < 0 for b in self.boundaries) or list(self.boundaries) != sorted(
                set(self.boundaries)):
            raise ValueError(f"schedule boundaries must be increasing steps >= 0, got "
                             f"{list(self.boundaries)}")

    @classmethod
    def constant(cls, value: float = 1.0) -> Schedule:
        return cls((value,))

    @classmethod
    def step(cls, before: float, after: float, boundary: int) -> Schedule:
        """`before` until `boundary`, then `after` (a warm-up or a decay)."""
        return cls((before, after), (boundary,))

    def value_at(self, step: int) -> float:
        return self.values[sum(step >= b for b in self.boundaries)]

    def agrees_before(self, other: Schedule, step: int) -> bool:
        """True when both give the same value at every step before `step`: moving a boundary
        that neither has reached changes none of the steps already run."""
        starts = {0, *self.boundaries, *other.boundaries}
        return all(self.value_at(s) == other.value_at(s) for s in starts if s < step)

    @classmethod
    def from_dict(cls, fields: object) -> Schedule:
        if isinstance(fields, Schedule):
            return fields
        return _from_fields(cls, fields, "schedule")


# The paper's schedules: a rate warm-up for the first 50k steps that aims at 0.20/0.14 times
# the target with half the rate weight, and the learning rate divided by 10 at 500k steps.
PAPER_TARGET_RATE_SCHEDULE = Schedule.step(0.20 / 0.14, 1.0, 50_000)
PAPER_RATE_WEIGHT_SCHEDULE = Schedule.step(0.5, 1.0, 50_000)
PAPER_LEARNING_RATE_SCHEDULE = Schedule.step(1.0, 0.1, 500_000)


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """What is learned (HIFIC_SPEC.md, "Loss and training"): losses, rate control,
    schedules, optimiser and data augmentation. Resuming a run needs the same recipe."""

    model: str = "hific"  # a key of MODEL_PRESETS
    # The model's switches (ModelConfig, docs/ablations.md), chosen by the recipe so that each
    # is a training flag; the preset gives the widths.
    normalization: str = ModelConfig.normalization
    discriminator_condition: str = ModelConfig.discriminator_condition
    stage: str = "hific"  # "mselpips" (no GAN) or "hific"
    target_rate: float = 0.14  # r_t in bits per pixel
    lambda_a: float = 2.0**1  # rate weight above the target
    # Rate weight below the target: 2^-6 in the authors' released code (the default here),
    # 2^-4 in the paper's table as others transcribe it.
    lambda_b: float = 2.0**-6
    k_m: float = 0.075 * 2.0**-5
    k_p: float = 1.0
    beta: float = 0.15
    # Factors on target_rate and on lambda(a)/lambda(b), and on learning_rate.
    target_rate_schedule: Schedule = PAPER_TARGET_RATE_SCHEDULE
    rate_weight_schedule: Schedule = PAPER_RATE_WEIGHT_SCHEDULE
    learning_rate: float = 1e-4
    learning_rate_schedule: Schedule = PAPER_LEARNING_RATE_SCHEDULE
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-8
    batch_size: int = 8  # global, per half-batch: D and E/G/P each see this many
    crop_size: int = 256
    # > 0: shrink training photos to this short side first (the photos the model will code
    # are of that size); 0 keeps them as they are, as the paper does.
    data_short_side: int = 0
    discriminator_steps: int = 1
    # > 0: D sees every image (real and G's alike, in D's and G's updates) rolled with its
    # condition by a random 0..N-1 pixels, so it cannot learn statistics tied to the phase
    # of G's stride-2 upsampling grid or memorise a small training set. Not in the paper
    # (0 there); an augmentation in the spirit of DiffAugment's translation.
    discriminator_shift: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("target_rate_schedule", "rate_weight_schedule", "learning_rate_schedule"):
            object.__setattr__(self, name, Schedule.from_dict(getattr(self, name)))
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; choose one of "
                             f"{', '.join(MODEL_PRESETS)}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        model = self.model_config
        if self.crop_size % model.pad_multiple:
            raise ValueError(f"crop_size must be a multiple of {model.pad_multiple}, "
                             f"got {self.crop_size}")
        if self.discriminator_shift < 0:
            raise ValueError(f"discriminator_shift must be 0 or more, got "
                             f"{self.discriminator_shift}")
        for name in ("batch_size", "discriminator_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self._check_rate_control()
        if self.beta > 0 and not self.uses_gan:
            raise ValueError(f"beta {self.beta} would be ignored: stage {self.stage!r} has no "
                             "GAN; set beta=0 or stage='hific'")

    def _check_rate_control(self) -> None:
        """A positive target, and a rate weight above it (lambda_a) larger than the one below
        it (lambda_b), as the authors' code requires of its inverse weights: otherwise the
        rate is penalised less above the target than below it, or (equal) not steered."""
        if self.target_rate <= 0:
            raise ValueError(f"target_rate must be positive (bits per pixel), got "
                             f"{self.target_rate}")
        if self.lambda_a <= self.lambda_b:
            raise ValueError(f"lambda_a (the rate weight above target_rate) must be larger "
                             f"than lambda_b (below it), got lambda_a {self.lambda_a} <= "
                             f"lambda_b {self.lambda_b}")

    @property
    def uses_gan(self) -> bool:
        return self.stage == "hific"

    @property
    def model_config(self) -> ModelConfig:
        return dataclasses.replace(MODEL_PRESETS[self.model], normalization=self.normalization,
                                   discriminator_condition=self.discriminator_condition)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingRecipe:
        """Inverse of to_json; an unknown key is a ValueError naming it."""
        return _from_fields(cls, json.loads(text), "training recipe")

    def differences(self, other: TrainingRecipe, completed_steps: int = 0) -> list[str]:
        """Names of the fields where the two recipes differ; a schedule counts only where it
        differs before `completed_steps` (the steps already run)."""
        def differs(name: str) -> bool:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, Schedule):
                return not mine.agrees_before(theirs, completed_steps)
            return mine != theirs

        return [f.name for f in dataclasses.fields(self) if differs(f.name)]


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """How a run is operated: its length, checkpoints, summaries, strategy and precision.
    These may change when a run resumes, except the precision (its optimiser state)."""

    num_steps: int = 1_000_000
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 3
    log_every: int = 100
    summary_every: int = 100
    image_every: int = 5_000
    validate_every: int = 5_000
    snapshot_every: int = 0  # every N steps, snapshots/step-N.npz (float16 weights); 0: never
    strategy: str = "default"  # a tf.distribute strategy, see STRATEGIES
    precision: str = "float32"  # or "mixed_bfloat16" / "mixed_float16" on accelerators
    jit_compile: bool = False  # the replica step compiled by XLA (benchmarks/train_step.py)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of "
                             f"{', '.join(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of "
                             f"{', '.join(STRATEGIES)}")
        for name in ("num_steps", "checkpoint_every", "keep_checkpoints", "log_every",
                     "summary_every", "image_every", "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.snapshot_every < 0:
            raise ValueError(f"snapshot_every must be 0 (never) or positive, got "
                             f"{self.snapshot_every}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingRun:
        """Inverse of to_json; an unknown key is a ValueError naming it."""
        return _from_fields(cls, json.loads(text), "training run")


RECIPE_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingRecipe))
RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainingRun))


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """A recipe and the run that applies it: a training preset, or train_config.json."""

    recipe: TrainingRecipe = TrainingRecipe()
    run: TrainingRun = TrainingRun()

    def replace(self, **fields: object) -> TrainingConfig:
        """A copy with recipe and run fields replaced, each by its name."""
        unknown = sorted(set(fields) - RECIPE_FIELDS - RUN_FIELDS)
        if unknown:
            raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
        recipe = {k: v for k, v in fields.items() if k in RECIPE_FIELDS}
        run = {k: v for k, v in fields.items() if k in RUN_FIELDS}
        return TrainingConfig(dataclasses.replace(self.recipe, **recipe),
                              dataclasses.replace(self.run, **run))

    def to_json(self) -> str:
        return json.dumps({"recipe": dataclasses.asdict(self.recipe),
                           "run": dataclasses.asdict(self.run)}, sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingConfig:
        """Inverse of to_json (also reads the flat layout of earlier versions); an unknown
        key is a ValueError naming it."""
        fields = json.loads(text)
        if isinstance(fields, dict) and not {"recipe", "run"} & set(fields):
            fields = _split_flat(fields)
        if not isinstance(fields, dict):
            raise ValueError("a training configuration must be a JSON object")
        unknown = sorted(set(fields) - {"recipe", "run"})
        if unknown:
            raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}; "
                             "known: recipe, run")
        return cls(_from_fields(TrainingRecipe, fields.get("recipe", {}), "training recipe"),
                   _from_fields(TrainingRun, fields.get("run", {}), "training run"))


def _split_flat(fields: dict) -> dict:
    """train_config.json as written before recipe and run were split: one flat object whose
    warm-up and decay steps and factors become schedules."""
    fields = dict(fields)
    warmup = fields.pop("rate_warmup_steps", 50_000)
    target_factor = fields.pop("warmup_target_factor", 0.20 / 0.14)
    weight_factor = fields.pop("warmup_weight_factor", 0.5)
    decay_step = fields.pop("learning_rate_decay_step", 500_000)
    decay_factor = fields.pop("learning_rate_decay_factor", 0.1)
    unknown = sorted(set(fields) - RECIPE_FIELDS - RUN_FIELDS)
    if unknown:
        raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
    recipe = {k: v for k, v in fields.items() if k in RECIPE_FIELDS}
    recipe.update(target_rate_schedule=Schedule.step(target_factor, 1.0, warmup),
                  rate_weight_schedule=Schedule.step(weight_factor, 1.0, warmup),
                  learning_rate_schedule=Schedule.step(1.0, decay_factor, decay_step))
    return {"recipe": recipe, "run": {k: v for k, v in fields.items() if k in RUN_FIELDS}}


# The paper's published models (the authors' graphs, hific_tf.published), trained with the
# recipes of the training presets of the same names.
PUBLISHED_MODELS = ("hific-lo", "hific-mi", "hific-hi")


def _paper_presets() -> dict[str, TrainingConfig]:
    presets = {}
    for level, target, lambda_a in (("lo", 0.14, 2.0**1), ("mi", 0.30, 2.0**0),
                                    ("hi", 0.45, 2.0**-1)):
        presets[f"mselpips-{level}"] = TrainingConfig(TrainingRecipe(
            stage="mselpips", target_rate=target, lambda_a=lambda_a, beta=0.0))
        presets[f"hific-{level}"] = TrainingConfig(TrainingRecipe(
            stage="hific", target_rate=target, lambda_a=lambda_a))
    return presets


# The tiny model's recipe, sized for a 2-core CPU: small crops and batches, a short rate
# warm-up, a higher learning rate, and k_P = 0 (no LPIPS: faster steps).
_TINY_RECIPE = TrainingRecipe(
    model="tiny", target_rate=0.14, k_p=0.0, batch_size=4, crop_size=128,
    learning_rate=1e-3, target_rate_schedule=Schedule.step(0.20 / 0.14, 1.0, 200),
    rate_weight_schedule=Schedule.step(0.5, 1.0, 200),
    learning_rate_schedule=Schedule.step(1.0, 0.1, 50_000))
_TINY_RUN = TrainingRun(num_steps=2_000, checkpoint_every=200, log_every=10, summary_every=10,
                        image_every=200)

# The bundled small models' recipe (issues 24 and 29; docs/bundled-models.md): the paper's
# losses (k_P = 1 with the real LPIPS, k_M, rate control, beta = 0.15 and one D update per G
# update in stage 2) and its lr 1e-4, at the small width on the 70 training photos shrunk to
# a 512-pixel short side, batch 8. Not the paper's, for a 2-core CPU: 128 x 128 crops, no
# schedules, stage 1 continued for 20 000 steps from earlier stage-1 weights, stage 2 12 000
# steps (experiments/bundled_training/train.sh). The crop target 0.24 bpp puts whole
# 768 x 512 photos near the bundled 0.25 bpp. Every 2 000 steps a run given
# --validation_data scores it (the learning curves).
_SMALL_RECIPE = TrainingRecipe(
    model="small", stage="mselpips", target_rate=0.24, k_p=1.0, beta=0.0, crop_size=128,
    data_short_side=512, learning_rate=1e-4, target_rate_schedule=Schedule.constant(),
    rate_weight_schedule=Schedule.constant(), learning_rate_schedule=Schedule.constant())
_SMALL_STAGE_TWO = TrainingConfig(
    dataclasses.replace(_SMALL_RECIPE, stage="hific", beta=0.15),
    TrainingRun(num_steps=12_000, checkpoint_every=400, keep_checkpoints=4, log_every=50,
                summary_every=50, image_every=100_000, validate_every=2_000))

TRAINING_PRESETS: dict[str, TrainingConfig] = {
    **_paper_presets(),
    "tiny-mselpips": TrainingConfig(
        dataclasses.replace(_TINY_RECIPE, stage="mselpips", beta=0.0), _TINY_RUN),
    "tiny-hific": TrainingConfig(_TINY_RECIPE, _TINY_RUN),
    # The bundled small models: stage 1, then from it hific-small (the GAN) and its matched
    # control mselpips-small (the paper's "no GAN" baseline: stage 1 continued for as many
    # steps), so that the GAN is not credited with what more training does.
    "small-mselpips": TrainingConfig(
        _SMALL_RECIPE, dataclasses.replace(_SMALL_STAGE_TWO.run, num_steps=20_000,
                                           checkpoint_every=500)),
    "small-hific": _SMALL_STAGE_TWO,
    # experiments/paper_claim_small's control: stage 2 with beta = 0 (D trains beside G but
    # never enters its loss).
    "small-hific-control": _SMALL_STAGE_TWO.replace(beta=0.0),
}


def _ablation_presets() -> dict[str, TrainingConfig]:
    """The ablations of docs/ablations.md at the tiny and small scale: both stages with
    instance or batch normalization, and stage 2 with an unconditional D."""
    presets = {}
    for scale in ("tiny", "small"):
        for stage in STAGES:
            for normalization in NORMALIZATIONS[1:]:
                presets[f"{scale}-{stage}-{normalization}norm"] = TRAINING_PRESETS[
                    f"{scale}-{stage}"].replace(normalization=normalization)
        presets[f"{scale}-hific-unconditional"] = TRAINING_PRESETS[f"{scale}-hific"].replace(
            discriminator_condition="none")
    return presets


TRAINING_PRESETS.update(_ablation_presets())


def training_preset(name: str) -> TrainingConfig:
    """Returns a named training preset, or raises ValueError listing the known names."""
    try:
        return TRAINING_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown training preset {name!r}; choose one of {', '.join(TRAINING_PRESETS)}"
        ) from None
