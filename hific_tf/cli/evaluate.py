"""hific-tf evaluate --images=FOLDER[,FOLDER] [--models=A,B] [--codecs=...] [--rates=...]

Writes per_image.csv, one CompressAI-layout JSON per codec, summary.json, rate–distortion
and rate–perception plots (rd_*.png) and a side-by-side crop figure into --output. LPIPS
and FID/KID use the real networks from the packages `make` installs (docs/metrics.md); if one
of those packages is missing, its metrics are skipped with a note saying how to install it.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.errors import UserError

_IMAGES = flags.DEFINE_list("images", None, "Folders of images to evaluate on, together "
                            "(e.g. the 20 validation photos: val768 and more/val768).",
                            required=True)
_OUTPUT = flags.DEFINE_string("output", "out/evaluation", "Folder for the report.")
_MODELS = flags.DEFINE_list("models", [], "Models to code with: bundled or published names "
                            "(hific-small, hific-lo, ...), weights files (.npz), or "
                            "checkpoint or SavedModel directories (named after their "
                            "folder).")
_CODECS = flags.DEFINE_list("codecs", ["jpeg", "webp", "avif"],
                            "Classic codecs: jpeg, webp, avif, jpeg2000, jpegxl, hevc.")
_RATES = flags.DEFINE_list("rates", [], "Target bpps for the classic codecs. Default: the "
                           "first model's mean bpp and twice it (matched rates).")
_LIMIT = flags.DEFINE_integer("limit", None, "Evaluate only the first N images.")


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    from hific_tf.codec import load_codec
    from hific_tf.evaluation import report
    from hific_tf.evaluation.classic_codecs import get_codec
    from hific_tf.storage.images import list_images, read_image

    paths = []
    for folder in map(Path, _IMAGES.value):
        if not folder.is_dir():
            raise UserError(f"--images: {folder} is not a folder")
        paths += list_images(folder)
    paths = paths[:_LIMIT.value]
    if not paths:
        raise UserError(f"--images={','.join(_IMAGES.value)} holds no images")
    names = [path.name for path in paths]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"--images: {', '.join(repeated)} appear in more than one folder; "
                        "the report names images by file name, so rename one")
    if not _MODELS.value and not _RATES.value:
        raise UserError("give --models, or --rates for the classic codecs")
    try:
        rates = [float(rate) for rate in _RATES.value]
    except ValueError:
        raise UserError(f"--rates must be numbers, got {_RATES.value}") from None
    classics = [get_codec(name) for name in _CODECS.value]
    images = {path.name: read_image(path) for path in paths}
    measures = report.load_measures()
    models = [report.model_entry(Path(path).name, load_codec(path, PUBLISHED_DIR.value))
              for path in _MODELS.value]
    common.report(images, models, classics, rates, measures, Path(_OUTPUT.value))
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
