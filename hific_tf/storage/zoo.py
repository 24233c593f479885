"""Models that ship inside the package, loaded by name (`--model NAME`).

A bundled model is one `.npz` file in `hific_tf/weights/`: the architecture as JSON, every
weight in creation order, batch normalization's moving statistics last where the
architecture has them (float16 or float32), and the coding tables (`table_*`, computed once
when the model was bundled; see entropy_coding.py). Weights and tables make up the model
identifier, the same on every machine, so files written with one bundled model decode with it
anywhere and are refused by any other. Beside it,
`NAME.reference.json` and `NAME.reference.png` hold what the model made of a reference crop
(the compressed size and the reconstruction), which tests/test_bundled.py reproduces.

$HIFIC_TF_WEIGHTS_DIR, when set, replaces the package folder: names are then looked up there,
and `hific-tf bundle` writes there by default (for trying stand-in or new weights).
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from hific_tf.coding.entropy_coding import CodingTables
from hific_tf.coding.model import HiFiC
from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.storage.files import write_atomic

SUFFIX = ".npz"
TABLE_PREFIX = "table_"
WEIGHTS_ENV = "HIFIC_TF_WEIGHTS_DIR"
# The models this package ships: HiFiC (stage 2, with the GAN) and its no-GAN control,
# stage 1 trained as long again without the GAN (the small-* presets in configs.py).
SHIPPED_MODELS = ("hific-small", "mselpips-small")
REFERENCE_CROP = 256


def bundled_folder() -> Path:
    """The folder of bundled weights: $HIFIC_TF_WEIGHTS_DIR, else the package's own."""
    override = os.environ.get(WEIGHTS_ENV)
    return Path(override) if override else Path(str(resources.files("hific_tf") / "weights"))


def bundled_names() -> list[str]:
    """Names of the models shipped with this installation."""
    folder = bundled_folder()
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def save_weights(model: HiFiC, path: str | Path, float16: bool = True,
                 overwrite: bool = False) -> None:
    """Writes `model`'s architecture, weights and coding tables to one .npz file.

    The tables are computed here, once, from the weights as stored (float16 or float32), so
    that every later load uses exactly these.
    """
    model.build_weights()
    arrays = {"config": np.frombuffer(model.config.to_json().encode(), np.uint8)}
    stored = HiFiC(model.config).build_weights()
    for index, (variable, target) in enumerate(
            zip(_weight_variables(model), _weight_variables(stored), strict=True)):
        value = variable.numpy()
        arrays[f"w{index:04d}"] = value.astype(np.float16) if float16 else value
        target.assign(arrays[f"w{index:04d}"].astype(np.float32))
    stored.prepare_for_coding()
    for key, value in stored.coding_tables.arrays().items():
        arrays[TABLE_PREFIX + key] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue(), overwrite=overwrite)


def _weight_variables(model: HiFiC) -> list:
    # Every weight of E, G and P is trainable but batch normalization's moving statistics;
    # the coding tables and the identifier are not weights.
    return list(model.trainable_variables) + model.moving_statistics()


def load_weights(path: str | Path) -> HiFiC:
    """Builds the model stored in `path` and assigns its weights (as float32), unprepared.

    `load_bundled` also fixes the stored tables; this is for training from the weights.
    """
    return _read(path)[0]


def _read(path: str | Path) -> tuple[HiFiC, CodingTables | None]:
    try:
        with np.load(path) as stored:
            config = ModelConfig.from_json(bytes(stored["config"]).decode())
            keys = sorted(k for k in stored.files if k.startswith("w"))
            values = [stored[key] for key in keys]
            table_arrays = {k[len(TABLE_PREFIX):]: stored[k] for k in stored.files
                            if k.startswith(TABLE_PREFIX)}
            tables = CodingTables.from_arrays(table_arrays) if table_arrays else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(f"{path} is not a hific-tf weights file ({error})") from None
    model = HiFiC(config).build_weights()
    variables = _weight_variables(model)
    shapes_match = len(values) == len(variables) and all(
        tuple(v.shape) == tuple(a.shape) for v, a in zip(variables, values, strict=False))
    if not shapes_match:
        found = (f"{len(values)} weights where normalization {config.normalization!r} has "
                 f"{len(variables)}" if len(values) != len(variables) else "weights of other "
                 "shapes")
        raise UserError(f"{path} does not match the architecture it declares ({found}); it is "
                        "damaged or from another version of hific-tf")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value.astype(np.float32))
    return model, tables


def load_bundled(name: str) -> HiFiC:
    """A bundled model by name, prepared for coding with its stored tables."""
    path = bundled_folder() / f"{name}{SUFFIX}"
    if not path.is_file():
        known = ", ".join(bundled_names()) or "none in this installation"
        raise UserError(f"no bundled model named {name!r} (bundled: {known})")
    return load_file(path)


def load_file(path: str | Path) -> HiFiC:
    """The model of a weights file, prepared for coding with its stored tables."""
    model, tables = _read(path)
    if tables is None:
        raise UserError(f"{path} has no coding tables (bundled by hific-tf 0.1); bundle it "
                        "again with hific-tf bundle")
    try:
        return model.prepare_for_coding(tables)
    except ValueError as error:
        raise UserError(f"{path} has damaged coding tables ({error})") from None


def reference_paths(name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """The reference files (JSON, PNG) of bundled model `name`."""
    folder = bundled_folder() if folder is None else folder
    return folder / f"{name}.reference.json", folder / f"{name}.reference.png"


def reference_crop(image: np.ndarray, size: int = REFERENCE_CROP) -> np.ndarray:
    """The centre `size` x `size` crop of `image` (smaller where the image is)."""
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top:top + size, left:left + size]
