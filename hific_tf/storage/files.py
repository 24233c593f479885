"""Writing files so that an interrupted or failed run never leaves a partial file: the one
place that writes beside a target and renames into place (outputs, cache, weights)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from hific_tf.errors import UserError

if TYPE_CHECKING:
    from google.protobuf.message import Message


def check_writable(path: str | Path, overwrite: bool) -> None:
    """Raises UserError if `path` exists and overwriting was not asked for."""
    if Path(path).exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary file beside `path`, renamed onto `path` when the block
    ends; if the block raises, the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
    try:
        # mkstemp creates the file readable by its owner only; outputs get the permissions
        # any new file gets (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes, overwrite: bool = False) -> None:
    """Writes `data` to `path` atomically (see atomic_writer)."""
    check_writable(path, overwrite)
    with atomic_writer(path) as stream:
        stream.write(data)


def read_message(path: str | Path, message: Message, not_one: str) -> Message:
    """Parses the protocol buffer file `path` into `message`; one line when it cannot be read
    or holds no such message ("PATH " + `not_one`)."""
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        message.ParseFromString(path.read_bytes())
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    except DecodeError:
        raise UserError(f"{path} {not_one}") from None
    return message
