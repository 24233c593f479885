"""hific-tf convert --model=hific-lo [--published_dir=DIR] --output=DIR: a published model (or
any graph of that layout) → this project's checkpoint directory.

The directory works as --model=DIR for compress (writing .tfci files as the published graph
does), decompress and export, and as --init_from for training. Widths and block counts are
read from the graph.
"""

from __future__ import annotations

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.errors import UserError

_MODEL = flags.DEFINE_string("model", None, "The published model to convert: hific-lo, "
                             "hific-mi or hific-hi.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Checkpoint directory to write.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing directory's contents.")
_PRESET = flags.DEFINE_string(
    "preset", None, "A model preset the graph must match (its configuration is saved, so the "
    "directory can start training runs of that preset). Default: the architecture read from "
    "the graph, the paper's discriminator.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Download cache (default: the user cache).")
_OFFLINE = flags.DEFINE_bool("offline", None, "Never download; fail if the file is missing.")


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    from pathlib import Path

    from hific_tf.configs import model_preset
    from hific_tf.published import converted, runner
    from hific_tf.published.weight_import import import_published_file

    try:
        expected = None if _PRESET.value is None else model_preset(_PRESET.value)
    except ValueError as error:
        raise UserError(str(error)) from None

    output = Path(_OUTPUT.value)
    if output.exists() and any(output.iterdir()) and not _OVERWRITE.value:
        raise UserError(f"{output} exists and is not empty; pass --overwrite to replace its "
                        "checkpoint")
    path = runner.metagraph_path(_MODEL.value, PUBLISHED_DIR.value, _CACHE_DIR.value,
                                    _OFFLINE.value)
    model, coding = import_published_file(path, expected, _PRESET.value or "graph's")
    converted.save_converted(model, coding, _MODEL.value, output)
    config = model.config
    print(f"wrote {output}: {_MODEL.value} as a checkpoint (E widths "
          f"{list(config.encoder_channels)}, {config.residual_blocks} residual blocks, "
          f"h widths {config.hyper_channels}, C_y {config.latent_channels})")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
