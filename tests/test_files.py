"""Atomic writes: one implementation, used by every writer, that never leaves a partial file."""

from __future__ import annotations

import os
import stat

import pytest

from hific_tf.storage import cache, files

from conftest import REPO


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out" / "file.bin"
    files.write_atomic(target, b"first")
    with pytest.raises(RuntimeError), files.atomic_writer(target) as stream:
        stream.write(b"half of the second")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
    with pytest.raises(files.UserError, match="already exists; pass --overwrite"):
        files.write_atomic(target, b"second")
    files.write_atomic(target, b"second", overwrite=True)
    assert target.read_bytes() == b"second"


def test_a_failed_download_leaves_nothing_in_the_cache(tmp_path):
    resource = cache.Resource("models/x.bin", "http://127.0.0.1:9/x.bin", "a test file")
    with pytest.raises(cache.MissingResourceError, match="cannot download a test file"):
        cache.fetch(resource, tmp_path, offline=False, timeout=5)
    assert list((tmp_path / "models").iterdir()) == []


def test_written_files_get_the_permissions_of_any_new_file(tmp_path):
    umask = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "out.png", b"data")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644


def test_only_files_py_renames_temporary_files_into_place():
    writers = sorted(str(path.relative_to(REPO)) for path in (REPO / "hific_tf").rglob("*.py")
                     if "os.replace(" in path.read_text() or "mkstemp(" in path.read_text())
    assert writers == ["hific_tf/storage/files.py"]
