"""hific-tf bundle --model=RUN_DIR --name=NAME: a trained model → hific_tf/weights/NAME.npz.

With --reference_image, it also writes NAME.reference.json and NAME.reference.png beside the
weights: the stored model's file size and reconstruction for the centre crop of that photo,
which tests/test_bundled.py reproduces (`make small-models` refreshes them). With
--check_images, it reports what float16 storage changes: each photo is coded by the float32
and the float16 model and the two decoded images are compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from absl import flags

from hific_tf.cli import common
from hific_tf.errors import UserError

if TYPE_CHECKING:
    from hific_tf.coding.model import HiFiC

_MODEL = flags.DEFINE_string("model", None, "Checkpoint (run) directory.", required=True)
_NAME = flags.DEFINE_string("name", None, "Bundled model name, e.g. hific-small.",
                            required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Folder (default: the package's weights "
                              "folder, or $HIFIC_TF_WEIGHTS_DIR).")
_FLOAT32 = flags.DEFINE_bool("float32", False, "Store float32 instead of float16.")
_CHECK = flags.DEFINE_string("check_images", None, "Folder of photos on which to compare "
                             "float16 and float32 decodes.")
_REFERENCE = flags.DEFINE_string("reference_image", None, "One of the repository's photos "
                                 "(photos/) whose centre crop becomes the model's reference "
                                 "(tests/test_bundled.py looks it up there by name).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing weights and reference "
                               "files.")


def main(argv: list[str]) -> int:
    common.refuse_arguments(argv)
    import numpy as np

    from hific_tf.storage import checkpoints, zoo
    from hific_tf.storage.files import check_writable

    folder = Path(_OUTPUT.value) if _OUTPUT.value else zoo.bundled_folder()
    path = folder / f"{_NAME.value}{zoo.SUFFIX}"
    references = zoo.reference_paths(_NAME.value, folder) if _REFERENCE.value else ()
    for target in (path, *references):
        check_writable(target, _OVERWRITE.value)
    if _REFERENCE.value and not Path(_REFERENCE.value).is_file():
        raise UserError(f"--reference_image={_REFERENCE.value} is not a file")
    model = checkpoints.load_model(_MODEL.value)
    zoo.save_weights(model, path, float16=not _FLOAT32.value, overwrite=_OVERWRITE.value)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    stored = zoo.load_file(path)
    if _REFERENCE.value:
        _write_reference(stored, _NAME.value, _REFERENCE.value, folder,
                            overwrite=_OVERWRITE.value)
        print(f"wrote {' and '.join(str(p) for p in references)}")
    if _CHECK.value:
        from hific_tf.evaluation.metrics import psnr
        from hific_tf.storage.images import list_images, read_image

        model.prepare_for_coding()
        for photo_path in list_images(_CHECK.value):
            photo = read_image(photo_path)
            exact = model.decompress(model.compress(photo)).numpy()
            bundled = stored.decompress(stored.compress(photo)).numpy()
            changed = np.count_nonzero(np.any(exact != bundled, axis=-1))
            print(f"{photo_path.name}: {changed} of {exact.shape[0] * exact.shape[1]} pixels "
                  f"differ, PSNR between decodes {float(psnr(exact, bundled)):.2f} dB")
    return 0


def _write_reference(model: HiFiC, name: str, photo: str | Path, folder: Path,
                     overwrite: bool = False) -> None:
    """Codes the centre crop of `photo` with `model` (prepared for coding) and writes the
    file size and the reconstruction as bundled model `name`'s reference files."""
    import json

    from hific_tf.evaluation.metrics import psnr
    from hific_tf.storage.files import write_atomic
    from hific_tf.storage.images import read_image, write_png
    from hific_tf.storage.zoo import REFERENCE_CROP, reference_crop, reference_paths

    crop = reference_crop(read_image(photo))
    data = model.compress(crop).numpy()
    reconstruction = model.decompress(data).numpy()
    json_path, png_path = reference_paths(name, folder)
    document = {"image": Path(photo).name, "crop": REFERENCE_CROP, "bytes": len(data),
                "bpp": 8 * len(data) / (crop.shape[0] * crop.shape[1]),
                "psnr_db": float(psnr(crop, reconstruction))}
    write_atomic(json_path, (json.dumps(document, indent=2) + "\n").encode(),
                 overwrite=overwrite)
    write_png(png_path, reconstruction, overwrite=overwrite)


def run(argv: list[str]) -> None:
    common.run(main, argv)
