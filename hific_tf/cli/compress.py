"""hific-tf compress --model=MODEL INPUT... [--output=PATH]: images → .hfc files."""

from __future__ import annotations

from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.memory_flag import MEMORY_BUDGET
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.coding.bitstream import FILE_SUFFIX
from hific_tf.storage import images

_MODEL = flags.DEFINE_string(
    "model", None, "Bundled model name, published model name (hific-lo/-mi/-hi: writes "
    ".tfci files), weights file (.npz), checkpoint directory or exported SavedModel "
    "directory.", required=True)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Output file (one input) or folder (required for a folder input). "
    "Default: beside each input, with the suffix .hfc (.tfci for published models).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing output files.")


def main(argv: list[str]) -> int:
    from hific_tf.published import converted, tfci
    suffix = tfci.TFCI_SUFFIX if converted.writes_tfci(_MODEL.value) else FILE_SUFFIX
    pairs = common.pair_paths(argv[1:], _OUTPUT.value, common.IMAGE_INPUTS, suffix)
    memory_budget = common.parse_memory_size(MEMORY_BUDGET.value)
    codec = common.open_codec_for_coding(_MODEL.value, PUBLISHED_DIR.value, memory_budget)

    def convert(source: Path) -> tuple[bytes, str]:
        image = images.read_image(source)
        data = codec.compress(image)
        bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
        return data, f"{image.shape[1]}x{image.shape[0]}  {len(data)} bytes  {bpp:.4f} bpp"

    return common.code_files(pairs, convert, _OVERWRITE.value, unit="image")


def run(argv: list[str]) -> None:
    common.run(main, argv)
