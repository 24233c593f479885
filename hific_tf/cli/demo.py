"""hific-tf demo: the bundled models on a folder of photos, against JPEG, WebP and AVIF.

Every photo is compressed with each bundled model (hific-small, mselpips-small): `.hfc` files
and PNG reconstructions, one subfolder per model. Then the evaluation report compares the
models with the classic codecs at hific-small's mean rate and twice it: per-image CSV,
CompressAI-layout JSON, rd_*.png plots and a side-by-side crop figure. Metrics: bpp, PSNR,
MS-SSIM, NIQE, LPIPS and FID/KID over FID/256 patches (the real LPIPS and FID Inception from
the packages `make` installs; the table says how many patches each FID/KID rests on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from absl import flags

from hific_tf.cli import common
from hific_tf.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from hific_tf.codec import Codec
    from hific_tf.evaluation import Entry

_INPUT = flags.DEFINE_string("input", None, "Folder of images to code (the repository "
                             "ships three in photos/; make demo uses them).", required=True)
_OUTPUT = flags.DEFINE_string("output", "out/demo",
                              "Folder for the results; the demo replaces its own files there.")

CLASSIC_CODECS = ("jpeg", "webp", "avif")


def code_and_save(name: str, codec: Codec, images: dict[str, np.ndarray],
                  folder: Path) -> Entry:
    """Codes every image with `codec`, writing STEM.hfc and STEM.png into `folder`; returns an
    evaluation entry that replays these results rather than coding again."""
    from hific_tf.bitstream import FILE_SUFFIX
    from hific_tf.evaluation import CodedImage, Entry
    from hific_tf.files import write_atomic
    from hific_tf.images import write_png
    from hific_tf.progress import Progress

    coded: dict[bytes, CodedImage] = {}
    progress = Progress(len(images), unit="image")
    for done, (image_name, image) in enumerate(images.items(), start=1):
        data = codec.compress(image)
        reconstruction = codec.decompress(data)
        stem = Path(image_name).stem
        write_atomic(folder / f"{stem}{FILE_SUFFIX}", data, overwrite=True)
        write_png(folder / f"{stem}.png", reconstruction, overwrite=True)
        coded[image.tobytes()] = CodedImage(len(data), reconstruction)
        bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
        progress.update(done, f"{name}  {image_name}  {bpp:.3f} bpp")
    return Entry(codec=name, setting="model", target_bpp=None,
                 code=lambda image: coded[image.tobytes()])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    started = time.monotonic()
    from hific_tf import zoo

    folder = Path(_INPUT.value)
    if not folder.is_dir():
        raise UserError(f"input folder {folder} does not exist; pass --input=FOLDER")
    names = [name for name in zoo.SHIPPED_MODELS if name in zoo.bundled_names()]
    if not names:
        raise UserError(f"the bundled models ({', '.join(zoo.SHIPPED_MODELS)}) are not in "
                        f"{zoo.bundled_folder()}; train and bundle them with `make "
                        f"small-models`, or set ${zoo.WEIGHTS_ENV} to a folder that holds them")
    for name in zoo.SHIPPED_MODELS:
        if name not in names:
            print(f"note: {name} is not bundled; the demo runs without it", flush=True)

    from hific_tf.classic_codecs import get_codec
    from hific_tf.codec import load_codec
    from hific_tf.images import list_images, read_image
    from hific_tf.progress import format_duration

    sources = list_images(folder)
    if not sources:
        raise UserError(f"{folder} holds no images")
    classics = [get_codec(name) for name in CLASSIC_CODECS]
    for codec in classics:
        codec.require()
    output = Path(_OUTPUT.value)
    print(f"coding {len(sources)} images from {folder} with {', '.join(names)}", flush=True)
    images = {path.name: read_image(path) for path in sources}
    models = [code_and_save(name, load_codec(name), images, output / name) for name in names]
    print(f"evaluating against {', '.join(CLASSIC_CODECS)} at matched rates", flush=True)
    measures = common.load_measures()
    written = common.report(images, models, classics, [], measures, output / "report")

    print(f"\ndone in {format_duration(time.monotonic() - started)}")
    for name in names:
        print(f"  {name + ':':<15} {output / name} (.hfc files, PNG reconstructions)")
    print(f"  {'report:':<15} {output / 'report'}\n  {'figure:':<15} {written['figure']}")
    return 0


def run(argv: list[str]) -> None:
    common.run(main, argv)
