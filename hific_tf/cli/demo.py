"""hific-tf demo: models on a folder of photos, against JPEG, WebP and AVIF.

Every photo is compressed with each model of --models (default: the bundled hific-small and
mselpips-small; any model --model takes, the paper's hific-lo/-mi/-hi included): `.hfc` files
(`.tfci` for the published models) and PNG reconstructions, one subfolder per model. Then the
evaluation report compares the models with the classic codecs aimed at the first model's
mean rate and twice it: per-image CSV, CompressAI-layout JSON, rd_*.png plots and a
side-by-side crop figure. Metrics: bpp, PSNR, MS-SSIM, NIQE, LPIPS and FID/KID over FID/256
patches (the real LPIPS and FID Inception from the packages `make` installs; the table says
how many patches each FID/KID rests on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from absl import flags

from hific_tf.cli import common
from hific_tf.cli.published_flag import PUBLISHED_DIR
from hific_tf.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from hific_tf.codec import FileCodec
    from hific_tf.evaluation.report import Entry

_INPUT = flags.DEFINE_string("input", None, "Folder of images to code (the repository "
                             "ships three in photos/; make demo uses them).", required=True)
_OUTPUT = flags.DEFINE_string("output", "out/demo",
                              "Folder for the results; the demo replaces its own files there.")
_MODELS = flags.DEFINE_list(
    "models", [], "Models to code with, as --model takes them: bundled (hific-small, "
    "mselpips-small), published (hific-lo, hific-mi, hific-hi; see --published_dir), "
    "weights files (.npz), checkpoint or SavedModel directories. The classic codecs are "
    "aimed at the first model's mean bpp and twice it, and the figure shows them at the "
    "first of these rates. Default: the bundled pair.")
REPORT_FOLDER = "report"

CLASSIC_CODECS = ("jpeg", "webp", "avif")


def code_and_save(name: str, codec: FileCodec, images: dict[str, np.ndarray],
                  folder: Path) -> Entry:
    """Codes every image with `codec`, writing STEM plus its file suffix (the compressed file)
    and STEM.png into `folder`; returns an evaluation entry that replays these results rather
    than coding again."""
    from hific_tf.evaluation.report import CodedImage, Entry
    from hific_tf.progress import Progress
    from hific_tf.storage.files import write_atomic
    from hific_tf.storage.images import write_png

    coded: dict[bytes, CodedImage] = {}
    progress = Progress(len(images), unit="image")
    for done, (image_name, image) in enumerate(images.items(), start=1):
        data = codec.compress(image)
        reconstruction = codec.decompress(data)
        stem = Path(image_name).stem
        write_atomic(folder / f"{stem}{codec.file_suffix}", data, overwrite=True)
        write_png(folder / f"{stem}.png", reconstruction, overwrite=True)
        coded[image.tobytes()] = CodedImage(len(data), reconstruction)
        bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
        progress.update(done, f"{name}  {image_name}  {bpp:.3f} bpp")
    return Entry(codec=name, setting="model", target_bpp=None,
                 code=lambda image: coded[image.tobytes()])


def bundled_pair() -> list[str]:
    """The default models: the bundled pair, those of it that are installed (a note for each
    missing one), or one line saying how to get them if neither is."""
    from hific_tf.storage import zoo
    names = [name for name in zoo.SHIPPED_MODELS if name in zoo.bundled_names()]
    if not names:
        raise UserError(f"the bundled models ({', '.join(zoo.SHIPPED_MODELS)}) are not in "
                        f"{zoo.bundled_folder()}; train and bundle them with `make "
                        f"small-models`, or set ${zoo.WEIGHTS_ENV} to a folder that holds them")
    for name in zoo.SHIPPED_MODELS:
        if name not in names:
            print(f"note: {name} is not bundled; the demo runs without it", flush=True)
    return names


def check_models(models: list[str]) -> dict[str, str]:
    """Each model of --models by the name of its output folder (a bundled or published
    model's name, else the directory's name); one line for a model that does not exist, two
    that would share a folder, or one named like the report's."""
    from hific_tf.published import runner
    from hific_tf.storage import zoo
    bundled = zoo.bundled_names()
    folders: dict[str, str] = {}
    for model in models:
        if model not in bundled and model not in runner.MODEL_NAMES:
            if model in zoo.SHIPPED_MODELS:
                raise UserError(f"--models: {model} is not bundled in {zoo.bundled_folder()}; "
                                "train and bundle it with `make small-models`, or set "
                                f"${zoo.WEIGHTS_ENV} to a folder that holds it")
            if not Path(model).exists():
                raise UserError(f"--models: unknown model {model!r}; choose from "
                                f"{', '.join([*bundled, *runner.MODEL_NAMES])}, or give a "
                                "weights file, checkpoint or SavedModel directory")
        folder = Path(model).name if Path(model).exists() else model
        if folder in folders or folder == REPORT_FOLDER:
            raise UserError(f"--models: {model} would write into the folder {folder!r} that "
                            f"{folders.get(folder, 'the report')} uses; rename its directory")
        folders[folder] = model
    return folders


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    started = time.monotonic()
    folder = Path(_INPUT.value)
    if not folder.is_dir():
        raise UserError(f"input folder {folder} does not exist; pass --input=FOLDER")
    models = check_models(_MODELS.value or bundled_pair())

    from hific_tf.codec import load_codec
    from hific_tf.evaluation.classic_codecs import get_codec
    from hific_tf.evaluation.report import load_measures
    from hific_tf.progress import format_duration
    from hific_tf.storage.images import list_images, read_image

    sources = list_images(folder)
    if not sources:
        raise UserError(f"{folder} holds no images")
    classics = [get_codec(name) for name in CLASSIC_CODECS]
    for codec in classics:
        codec.require()
    # Every model is opened before any codes, so a missing file fails in seconds.
    codecs = {name: load_codec(model, PUBLISHED_DIR.value) for name, model in models.items()}
    output = Path(_OUTPUT.value)
    print(f"coding {len(sources)} images from {folder} with {', '.join(models)}", flush=True)
    images = {path.name: read_image(path) for path in sources}
    entries = [code_and_save(name, codec, images, output / name)
               for name, codec in codecs.items()]
    print(f"evaluating against {', '.join(CLASSIC_CODECS)} aimed at {next(iter(models))}'s "
          "mean rate and twice it", flush=True)
    measures = load_measures()
    written = common.report(images, entries, classics, [], measures, output / REPORT_FOLDER)

    print(f"\ndone in {format_duration(time.monotonic() - started)}")
    for name, codec in codecs.items():
        print(f"  {name + ':':<15} {output / name} ({codec.file_suffix} files, PNG "
              "reconstructions)")
    print(f"  {'report:':<15} {output / REPORT_FOLDER}\n  {'figure:':<15} {written['figure']}")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
