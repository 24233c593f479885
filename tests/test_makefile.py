"""The Makefile's Python: the first of python3.11 and python3 that is a 3.11, or PYTHON=...;
any other stops make in one line naming 3.11, before .venv is made.

Each case runs make on a copy of the Makefile in a temporary folder, with a PATH holding only
stand-in interpreters (scripts that print the version make asks for)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

MAKE = shutil.which("make")
STAMP = ".venv/.installed-stamp"
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def stand_in(folder: Path, name: str, version: str) -> None:
    """An executable `name` in `folder` that prints `version` and succeeds, whatever it runs."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(0o755)


def run_make(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """make `arguments` on a copy of the Makefile, with PATH only tmp_path/bin."""
    work = tmp_path / "checkout"
    work.mkdir(parents=True)
    for name in ("Makefile", "codec-tools.mk", "setup.py", "pyproject.toml",
                 "requirements-perceptual.txt"):
        shutil.copy(REPO / name, work / name)
    (tmp_path / "bin").mkdir(exist_ok=True)
    environment = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}
    return subprocess.run([MAKE, "--no-print-directory", *arguments], cwd=work,
                          env=environment, capture_output=True, text=True, timeout=60)


def assert_refused(result: subprocess.CompletedProcess, tmp_path: Path, why: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "needs Python 3.11" in lines[0] and why in lines[0]
    assert "TensorFlow 2.14" in lines[0] and "python3.11-venv" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "checkout" / ".venv").exists()


def test_python3_of_another_version_and_no_python3_11_is_refused(tmp_path):
    stand_in(tmp_path / "bin", "python3", "3.12")
    result = run_make(tmp_path, STAMP)
    assert_refused(result, tmp_path, "neither python3.11 nor python3 on PATH is a 3.11")


def test_no_python_at_all_is_refused(tmp_path):
    assert_refused(run_make(tmp_path, "demo"), tmp_path, "neither python3.11 nor python3")


def test_python3_11_is_chosen_before_python3(tmp_path):
    stand_in(tmp_path / "bin", "python3", "3.12")
    stand_in(tmp_path / "bin", "python3.11", "3.11")
    result = run_make(tmp_path, "check-python")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python3.11 (Python 3.11)\n"


def test_python3_is_chosen_where_it_is_a_3_11(tmp_path):
    stand_in(tmp_path / "bin", "python3", "3.11")
    result = run_make(tmp_path, "check-python")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "python3 (Python 3.11)\n"


def test_a_given_python_of_another_version_is_refused(tmp_path):
    stand_in(tmp_path / "bin", "python3.11", "3.11")
    stand_in(tmp_path / "bin", "python3.12", "3.12")
    result = run_make(tmp_path, "demo", "PYTHON=python3.12")
    assert_refused(result, tmp_path, "PYTHON=python3.12 is Python 3.12")


def test_a_3_11_without_venv_is_refused(tmp_path):
    """Debian's python3.11 without python3.11-venv: no ensurepip, so no .venv to make."""
    script = tmp_path / "bin" / "python3.11"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\ncase "$2" in *ensurepip*) exit 1;; esac\necho 3.11\n')
    script.chmod(0o755)
    result = run_make(tmp_path, STAMP)
    assert_refused(result, tmp_path, "python3.11 is a 3.11 without venv and ensurepip")


def test_a_given_python_that_does_not_run_is_refused(tmp_path):
    result = run_make(tmp_path, STAMP, "PYTHON=python3.11")
    assert_refused(result, tmp_path, "PYTHON=python3.11 does not run")


def test_the_real_interpreters(tmp_path):
    """This test's own interpreter (a 3.11) is accepted; a real 3.12, where there is one, not."""
    result = run_make(tmp_path, "check-python", f"PYTHON={sys.executable}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{sys.executable} (Python 3.11)\n"
    found = subprocess.run("python3.12 -c 'import sys; print(sys.executable)'", shell=True,
                           capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip("no python3.12 that runs on PATH")
    result = run_make(tmp_path / "second", STAMP, f"PYTHON={found.stdout.strip()}")
    assert_refused(result, tmp_path / "second", "is Python 3.12")
