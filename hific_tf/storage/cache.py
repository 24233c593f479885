"""One cache for everything downloaded: the published models' files.

(LPIPS and the FID Inception come from installed packages instead: hific_tf/perceptual.)

A resource has a file name, a URL and, where known, a SHA-256. `fetch` returns the cached
file, downloading it unless offline; offline, a missing file is an error that names the
exact path to place it at. The cache directory is `--cache_dir`, else $HIFIC_TF_CACHE,
else ~/.cache/hific-tf; HIFIC_TF_OFFLINE=1 forbids downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from hific_tf.errors import UserError
from hific_tf.storage.files import atomic_writer

CACHE_ENV = "HIFIC_TF_CACHE"
OFFLINE_ENV = "HIFIC_TF_OFFLINE"
DEFAULT_CACHE = Path("~/.cache/hific-tf")


class MissingResourceError(UserError):
    """A resource is not in the cache and cannot be downloaded."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """A file the project can download: where from, what it is, how to check it."""

    name: str  # path inside the cache directory, e.g. "published/hific-lo.metagraph"
    url: str
    description: str
    sha256: str | None = None


def cache_dir(override: str | Path | None = None) -> Path:
    """The cache directory: `override`, else $HIFIC_TF_CACHE, else ~/.cache/hific-tf."""
    chosen = override or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


def offline_mode(override: bool | None = None) -> bool:
    """True when downloads are forbidden (`override`, else HIFIC_TF_OFFLINE=1)."""
    if override is not None:
        return override
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(resource: Resource, path: Path) -> None:
    if resource.sha256 and sha256_of(path) != resource.sha256:
        raise MissingResourceError(
            f"{path} does not match the known checksum of {resource.description}; delete it "
            f"and place the file from {resource.url} there")


def cached_path(resource: Resource, directory: str | Path | None = None) -> Path:
    """Where `resource` lives (or would live) in the cache."""
    return cache_dir(directory) / resource.name


def fetch(resource: Resource, directory: str | Path | None = None,
          offline: bool | None = None, timeout: float = 60.0) -> Path:
    """The local path of `resource`, downloading it into the cache if needed."""
    path = cached_path(resource, directory)
    if path.is_file():
        _check(resource, path)
        return path
    how_to_place = (f"download {resource.url} and place it at {path} (or set "
                    f"--cache_dir / ${CACHE_ENV} to a folder holding {resource.name})")
    if offline_mode(offline):
        raise MissingResourceError(f"{resource.description} not found (offline mode): "
                                   f"{how_to_place}")
    try:
        with atomic_writer(path) as stream, urllib.request.urlopen(
                resource.url, timeout=timeout) as response:
            shutil.copyfileobj(response, stream)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise MissingResourceError(f"cannot download {resource.description} ({error}): "
                                   f"{how_to_place}") from None
    _check(resource, path)
    return path
