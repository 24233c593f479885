"""Writing files so that an interrupted or failed run never leaves a partial file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hific_tf.errors import UserError


def check_writable(path: str | Path, overwrite: bool) -> None:
    """Raises UserError if `path` exists and overwriting was not asked for."""
    if Path(path).exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")


def write_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> None:
    """Writes `data` to a temporary file beside `path`, then renames it into place."""
    path = Path(path)
    check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
