"""The exported SavedModel serves the codec without hific_tf, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hific_tf.codec import load_codec
from hific_tf.storage.export import export_saved_model
from hific_tf.storage.images import read_image

from conftest import run_cli

pytestmark = pytest.mark.slow

# Runs in a fresh interpreter that cannot import hific_tf (it is not on the path and the
# script checks), exactly as a serving process would.
FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_compression  # registers the range-coding ops

    saved_model, image_path, out_prefix = sys.argv[1:]
    loaded = tf.saved_model.load(saved_model)
    image = np.load(image_path)
    data = loaded.signatures["compress"](image=tf.constant(image))["data"].numpy()
    assert loaded.compress(image).numpy() == data
    decoded = loaded.signatures["decompress"](data=tf.constant(data))["image"].numpy()
    assert "hific_tf" not in sys.modules
    open(out_prefix + ".hfc", "wb").write(data)
    np.save(out_prefix + ".npy", decoded)
""")


def test_saved_model_in_a_fresh_process_matches_the_library(tmp_path, tiny_model, photos):
    export_saved_model(tiny_model, tmp_path / "saved_model")
    image = read_image(photos[1])[:200, :300]
    np.save(tmp_path / "image.npy", image)
    (tmp_path / "serve.py").write_text(FRESH_PROCESS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "serve.py"),
         str(tmp_path / "saved_model"), str(tmp_path / "image.npy"), str(tmp_path / "served")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    served = (tmp_path / "served.hfc").read_bytes()
    assert served == tiny_model.compress(image).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "served.npy"),
                                  tiny_model.decompress(served).numpy())


def test_export_command_and_loading_back(tmp_path, tiny_checkpoint, tiny_model, rng):
    result = run_cli("export", f"--model={tiny_checkpoint}", f"--output={tmp_path / 'sm'}")
    assert result.returncode == 0, result.stderr
    assert tiny_model.model_id.numpy().hex() in result.stdout
    codec = load_codec(tmp_path / "sm")
    image = rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    data = codec.compress(image)
    assert data == tiny_model.compress(image).numpy()
    np.testing.assert_array_equal(codec.decompress(data), tiny_model.decompress(data).numpy())
    again = run_cli("export", f"--model={tiny_checkpoint}", f"--output={tmp_path / 'sm'}")
    assert again.returncode == 1 and "pass --overwrite" in again.stderr
