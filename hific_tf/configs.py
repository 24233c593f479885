"""Architecture configurations: the one place where HiFiC's widths and sizes live.

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
    # How h_s is evaluated when coding (hific_tf/entropy_coding.py): "integer", exact integer
    # arithmetic, so that files decode on any machine; "float", as trained and as the
    # authors' code does (for models imported from their graphs).
    hyper_synthesis: str = "integer"

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
        """Image sides are padded to a multiple of this so that z (H/64) is whole."""
        return self.latent_stride * 4

    def scale_table(self) -> list[float]:
        """The Gaussian conditional's scales: exp(linspace(ln min, ln max, num_scales))."""
        lo, hi = math.log(self.scale_min), math.log(self.scale_max)
        step = (hi - lo) / max(self.num_scales - 1, 1)
        return [math.exp(lo + i * step) for i in range(self.num_scales)]

    def same_networks(self, other: ModelConfig) -> bool:
        """True if `other` has the same networks, however it evaluates h_s when coding."""
        return dataclasses.replace(other, hyper_synthesis=self.hyper_synthesis) == self

    def to_json(self) -> str:
        """Canonical JSON, used in checkpoints and in the model identifier."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of to_json; unknown keys are an error."""
        fields = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**fields)


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


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """The training recipe (HIFIC_SPEC.md, "Loss and training") and how a run is operated.

    Fields in `RESUMABLE_FIELDS` may change when a run resumes; every other field must match
    the configuration saved beside the checkpoints.
    """

    model: str = "hific"  # a key of MODEL_PRESETS
    stage: str = "hific"  # "mselpips" (no GAN) or "hific"
    target_rate: float = 0.14  # r_t in bits per pixel
    lambda_a: float = 2.0**1  # rate weight above the target
    # Rate weight below the target: 2^-6 in the authors' released code (the default here),
    # 2^-4 in the paper's table as others transcribe it.
    lambda_b: float = 2.0**-6
    k_m: float = 0.075 * 2.0**-5
    k_p: float = 1.0
    beta: float = 0.15
    rate_warmup_steps: int = 50_000
    warmup_target_factor: float = 0.20 / 0.14
    warmup_weight_factor: float = 0.5
    learning_rate: float = 1e-4
    learning_rate_decay_step: int = 500_000
    learning_rate_decay_factor: float = 0.1
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
    precision: str = "float32"  # or "mixed_bfloat16" / "mixed_float16" on accelerators
    seed: int = 0
    num_steps: int = 1_000_000
    checkpoint_every: int = 5_000
    keep_checkpoints: int = 3
    log_every: int = 100
    summary_every: int = 100
    image_every: int = 5_000
    validate_every: int = 5_000

    RESUMABLE_FIELDS = frozenset({"num_steps", "checkpoint_every", "keep_checkpoints",
                                  "log_every", "summary_every", "image_every",
                                  "validate_every"})
    # Steps at which the schedule changes: moving one that neither recipe has reached yet
    # changes none of the steps already run.
    SCHEDULE_STEP_FIELDS = frozenset({"learning_rate_decay_step"})

    def __post_init__(self) -> None:
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {self.model!r}; choose one of "
                             f"{', '.join(MODEL_PRESETS)}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
            raise ValueError(f"unknown precision {self.precision!r}")
        model = MODEL_PRESETS[self.model]
        if self.crop_size % model.pad_multiple:
            raise ValueError(f"crop_size must be a multiple of {model.pad_multiple}, "
                             f"got {self.crop_size}")
        if self.discriminator_shift < 0:
            raise ValueError(f"discriminator_shift must be 0 or more, got "
                             f"{self.discriminator_shift}")
        for name in ("batch_size", "discriminator_steps", "num_steps", "checkpoint_every",
                     "keep_checkpoints", "log_every", "summary_every", "image_every",
                     "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def uses_gan(self) -> bool:
        return self.stage == "hific"

    @property
    def model_config(self) -> ModelConfig:
        return MODEL_PRESETS[self.model]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str) -> TrainingConfig:
        return cls(**json.loads(text))

    def recipe_differences(self, other: TrainingConfig, completed_steps: int = 0
                           ) -> list[str]:
        """Names of the fields, outside RESUMABLE_FIELDS, where the two recipes differ;
        a SCHEDULE_STEP_FIELDS entry counts only once either recipe has reached it
        (`completed_steps`)."""
        def differs(name: str) -> bool:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name in self.SCHEDULE_STEP_FIELDS and min(mine, theirs) >= completed_steps:
                return False
            return mine != theirs

        return [f.name for f in dataclasses.fields(self)
                if f.name not in self.RESUMABLE_FIELDS and differs(f.name)]


def _paper_presets() -> dict[str, TrainingConfig]:
    presets = {}
    for level, target, lambda_a in (("lo", 0.14, 2.0**1), ("mi", 0.30, 2.0**0),
                                    ("hi", 0.45, 2.0**-1)):
        presets[f"mselpips-{level}"] = TrainingConfig(
            stage="mselpips", target_rate=target, lambda_a=lambda_a, beta=0.0)
        presets[f"hific-{level}"] = TrainingConfig(
            stage="hific", target_rate=target, lambda_a=lambda_a)
    return presets


# The bundled GAN model's stage 2, from small-mselpips: 600 steps on the paper's 256 x 256
# crops (crop target 0.23 bpp), lr x 0.1 from step 400. A gentle GAN: beta 0.03, two D
# updates per G update and D's inputs randomly shifted (not the paper's: beta 0.15 without
# either turns G's output into a regular grid at this budget).
_SMALL_HIFIC = TrainingConfig(
    model="small", stage="hific", target_rate=0.23, k_p=0.0, beta=0.03,
    discriminator_steps=2, discriminator_shift=16, crop_size=256, data_short_side=512,
    learning_rate=1e-4, rate_warmup_steps=0, learning_rate_decay_step=400, num_steps=600,
    checkpoint_every=200, keep_checkpoints=4, log_every=25, summary_every=25,
    image_every=1_000, validate_every=200)

TRAINING_PRESETS: dict[str, TrainingConfig] = {
    **_paper_presets(),
    # The paper's recipe on the tiny model, sized for a 2-core CPU: small crops and batches,
    # a short rate warm-up, a higher learning rate, and no LPIPS (no weights here).
    "tiny-mselpips": TrainingConfig(
        model="tiny", stage="mselpips", target_rate=0.14, beta=0.0, k_p=0.0, batch_size=4,
        crop_size=128, learning_rate=1e-3, rate_warmup_steps=200,
        learning_rate_decay_step=50_000, num_steps=2_000, checkpoint_every=200,
        log_every=10, summary_every=10, image_every=200),
    "tiny-hific": TrainingConfig(
        model="tiny", stage="hific", target_rate=0.14, k_p=0.0, batch_size=4, crop_size=128,
        learning_rate=1e-3, rate_warmup_steps=200, learning_rate_decay_step=50_000,
        num_steps=2_000, checkpoint_every=200, log_every=10, summary_every=10,
        image_every=200),
    # The bundled small models' recipe: the paper's losses on the small model, photos shrunk
    # to a 512-pixel short side, batch 8, no LPIPS (no weights here). Stage 1 trains on
    # 128 x 128 crops at a crop target of 0.15 bpp (the 20 training photos are smoother than
    # val768 and code at ~60 % of its rate, so whole 768x512 photos code near 0.25 bpp).
    "small-mselpips": TrainingConfig(
        model="small", stage="mselpips", target_rate=0.15, beta=0.0, k_p=0.0,
        crop_size=128, data_short_side=512, learning_rate=3e-4, rate_warmup_steps=1_000,
        learning_rate_decay_step=4_500, num_steps=5_000, checkpoint_every=250,
        keep_checkpoints=4, log_every=25, summary_every=25, image_every=1_000,
        validate_every=250),
    "small-hific": _SMALL_HIFIC,
    # The bundled no-GAN model is stage 1 trained exactly as long as the GAN model:
    # small-hific with beta 0 (D still trains beside it, but never enters G's loss) and one
    # D update, as it was run. Without it the GAN would be credited with what 600 more
    # steps on larger crops do.
    "small-mselpips-256": dataclasses.replace(_SMALL_HIFIC, beta=0.0, discriminator_steps=1),
}


def training_preset(name: str) -> TrainingConfig:
    """Returns a named training preset, or raises ValueError listing the known names."""
    try:
        return TRAINING_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown training preset {name!r}; choose one of {', '.join(TRAINING_PRESETS)}"
        ) from None
