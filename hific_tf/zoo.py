"""Models that ship inside the package, loaded by name (`--model NAME`).

A bundled model is one `.npz` file in `hific_tf/weights/`: the architecture as JSON and every
weight in creation order, stored as float16 or float32. Its weights are part of the model
identifier, so files written with one bundled model are refused by any other.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np

from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.files import write_atomic
from hific_tf.model import HiFiC

SUFFIX = ".npz"


def bundled_folder() -> Path:
    """The package folder that holds the bundled weights."""
    return Path(str(resources.files("hific_tf") / "weights"))


def bundled_names() -> list[str]:
    """Names of the models shipped with this installation."""
    folder = bundled_folder()
    return sorted(p.stem for p in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def save_weights(model: HiFiC, path: str | Path, float16: bool = True,
                 overwrite: bool = False) -> None:
    """Writes `model`'s architecture and weights (before coding tables) to one .npz file."""
    model.build_weights()
    arrays = {"config": np.frombuffer(model.config.to_json().encode(), np.uint8)}
    for index, variable in enumerate(_weight_variables(model)):
        value = variable.numpy()
        arrays[f"w{index:04d}"] = value.astype(np.float16) if float16 else value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue(), overwrite=overwrite)


def _weight_variables(model: HiFiC) -> list:
    # Every weight of E, G and P is trainable; the coding tables and the identifier are not:
    # prepare_for_coding() derives them from the weights.
    return list(model.trainable_variables)


def load_weights(path: str | Path) -> HiFiC:
    """Builds the model stored in `path` and assigns its weights (as float32)."""
    try:
        with np.load(path) as stored:
            config = ModelConfig.from_json(bytes(stored["config"]).decode())
            values = [stored[key] for key in sorted(k for k in stored.files if k != "config")]
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path} is not a hific-tf weights file ({error})") from None
    model = HiFiC(config).build_weights()
    variables = _weight_variables(model)
    shapes_match = len(values) == len(variables) and all(
        tuple(v.shape) == tuple(a.shape) for v, a in zip(variables, values, strict=False))
    if not shapes_match:
        raise UserError(f"{path} does not match the architecture it declares; it is damaged "
                        "or from another version of hific-tf")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value.astype(np.float32))
    return model


def load_bundled(name: str) -> HiFiC:
    """A bundled model by name, prepared for coding."""
    path = bundled_folder() / f"{name}{SUFFIX}"
    if not path.is_file():
        known = ", ".join(bundled_names()) or "none in this installation"
        raise UserError(f"no bundled model named {name!r} (bundled: {known})")
    return load_weights(path).prepare_for_coding()
