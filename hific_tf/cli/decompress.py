"""hific-tf decompress --model=MODEL FILE.hfc... [--output=PATH]: .hfc files → PNG."""

from __future__ import annotations

from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.memory_flag import MEMORY_BUDGET
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.errors import UserError
from hific_tf.storage import images

_MODEL = flags.DEFINE_string(
    "model", None, "The model that wrote the files: bundled or published name, checkpoint "
    "or SavedModel directory.", required=True)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output file (one input) or folder (required for a folder input). "
    "Default: beside each input, with the suffix .png.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv: list[str]) -> int:
    pairs = common.pair_paths(argv[1:], _OUTPUT.value, common.COMPRESSED_INPUTS, ".png")
    memory_budget = common.parse_memory_size(MEMORY_BUDGET.value)
    codec = common.open_codec_for_coding(_MODEL.value, PUBLISHED_DIR.value, memory_budget)

    def convert(source: Path) -> tuple[bytes, str]:
        try:
            data = source.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read {source}: {error.strerror or error}") from None
        image = codec.decompress(data)
        return images.encode_png(image), f"{image.shape[1]}x{image.shape[0]}"

    return common.code_files(pairs, convert, _OVERWRITE.value, unit="file")


def run(argv: list[str]) -> None:
    common.run(main, argv)
