"""hific-tf evaluate --images=FOLDER [--models=A,B] [--codecs=jpeg,webp,avif] [--rates=...]

Writes per_image.csv, one CompressAI-layout JSON per codec, summary.json, rate–distortion
and rate–perception plots (rd_*.png) and a side-by-side crop figure into --output. Metrics
whose weights are missing (LPIPS, Inception for FID/KID) are skipped with a note saying how
to enable them; the rest of the report still completes.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from hific_tf.cli import common
from hific_tf.errors import UserError

_IMAGES = flags.DEFINE_string("images", "../shared/data/photos/val768",
                              "Folder of images to evaluate on.")
_OUTPUT = flags.DEFINE_string("output", "out/evaluation", "Folder for the report.")
_MODELS = flags.DEFINE_list("models", [], "This project's models: checkpoint or SavedModel "
                            "directories, named after their folder.")
_CODECS = flags.DEFINE_list("codecs", ["jpeg", "webp", "avif"],
                            "Classic codecs: jpeg, webp, avif, jpeg2000, jpegxl, hevc.")
_RATES = flags.DEFINE_list("rates", [], "Target bpps for the classic codecs. Default: the "
                           "first model's mean bpp and twice it (matched rates).")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Download cache (default "
                                 "$HIFIC_TF_CACHE or ~/.cache/hific-tf).")
_OFFLINE = flags.DEFINE_bool("offline", None, "Never download (default: $HIFIC_TF_OFFLINE).")
_INCEPTION = flags.DEFINE_string("inception", None, "Inception for FID/KID: TF-Hub handle or "
                                 "local SavedModel folder (default: cached copy or TF-Hub).")
_LIMIT = flags.DEFINE_integer("limit", None, "Evaluate only the first N images.")


def load_measures(cache_dir: str | None, offline: bool | None, inception: str | None):
    """NIQE always; LPIPS and Inception where their weights can be had, else a note."""
    from hific_tf.cache import MissingResourceError
    from hific_tf.evaluation import Measures
    from hific_tf.perceptual.niqe import niqe

    measures = Measures(niqe=niqe)
    try:
        from hific_tf.evaluation import lpips_distance
        from hific_tf.perceptual.lpips import load_lpips

        measures.lpips = lpips_distance(load_lpips(cache_dir=cache_dir, offline=offline))
    except MissingResourceError as error:
        measures.skipped["lpips"] = str(error)
    try:
        from hific_tf.perceptual.inception import InceptionFeatures, resolve_inception

        measures.inception = InceptionFeatures(resolve_inception(inception, cache_dir,
                                                                 offline))
    except MissingResourceError as error:
        measures.skipped["fid"] = measures.skipped["kid"] = str(error)
    return measures


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    from hific_tf import evaluation
    from hific_tf.codec import load_codec
    from hific_tf.codecs import get_codec
    from hific_tf.images import list_images, read_image

    folder = Path(_IMAGES.value)
    if not folder.is_dir():
        raise UserError(f"--images={folder} is not a folder")
    paths = list_images(folder)[:_LIMIT.value]
    if not paths:
        raise UserError(f"{folder} holds no images")
    if not _MODELS.value and not _RATES.value:
        raise UserError("give --models, or --rates for the classic codecs")
    try:
        rates = [float(rate) for rate in _RATES.value]
    except ValueError:
        raise UserError(f"--rates must be numbers, got {_RATES.value}") from None
    classics = [get_codec(name) for name in _CODECS.value]
    images = {path.name: read_image(path) for path in paths}
    measures = load_measures(_CACHE_DIR.value, _OFFLINE.value, _INCEPTION.value)
    for metric, how in measures.skipped.items():
        print(f"skipping {metric.upper()}: {how}", flush=True)

    models = [(Path(path).name, load_codec(path)) for path in _MODELS.value]
    model_entries = [evaluation.model_entry(name, codec) for name, codec in models]
    rows, summaries = evaluation.evaluate(images, model_entries, measures)
    if not rates:
        rates = [summaries[0]["bpp"], 2 * summaries[0]["bpp"]]
    classic_entries = [evaluation.classic_entry(codec.name, codec, rate)
                       for codec in classics for rate in rates]
    more_rows, more_summaries = evaluation.evaluate(images, classic_entries, measures)
    rows += more_rows
    summaries += more_summaries

    output = Path(_OUTPUT.value)
    written = evaluation.write_reports(rows, summaries, measures, output)
    first_image = next(iter(images.values()))
    panels = []
    for entry in [*model_entries, *classic_entries[:2]]:
        coded = entry.code(first_image)
        bpp = 8 * coded.num_bytes / (first_image.shape[0] * first_image.shape[1])
        panels.append((f"{entry.codec}, {bpp:.3f} bpp", coded.reconstruction))
    written["figure"] = evaluation.side_by_side_figure(first_image, panels,
                                                       output / "figure.png")

    print(f"\n{'codec':<16} {'setting':<20} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} "
          f"{'LPIPS':>7} {'NIQE':>7} {'FID':>8} {'KID':>9}")
    for s in summaries:
        cells = [f"{s[k]:>7.4f}" if s.get(k) is not None else f"{'-':>7}"
                 for k in ("bpp", "psnr", "ms_ssim", "lpips", "niqe", "fid", "kid")]
        print(f"{s['codec']:<16} {s['setting']:<20} " + " ".join(cells))
    print("\nwritten:")
    for what, path in written.items():
        print(f"  {what:<14} {path}")
    if measures.skipped:
        print("skipped metrics: " + ", ".join(sorted(measures.skipped)) +
              " (see the lines above for how to enable them)")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
