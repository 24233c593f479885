"""Weights files for bundled models: float16 storage, loading, identity, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hific_tf.errors import UserError
from hific_tf.storage import zoo
from hific_tf.storage.images import read_image

from conftest import make_tiny_model


def test_weights_round_trip_in_float16_and_float32(tmp_path, rng):
    model = make_tiny_model(seed=0)
    zoo.save_weights(model, tmp_path / "half.npz")
    zoo.save_weights(model, tmp_path / "full.npz", float16=False)
    half, full = zoo.load_weights(tmp_path / "half.npz"), zoo.load_weights(tmp_path / "full.npz")
    assert half.config == model.config
    originals = [v.numpy() for v in zoo._weight_variables(model)]
    for variable, original in zip(zoo._weight_variables(full), originals, strict=True):
        np.testing.assert_array_equal(variable.numpy(), original)
    for variable, original in zip(zoo._weight_variables(half), originals, strict=True):
        np.testing.assert_array_equal(variable.numpy(),
                                      original.astype(np.float16).astype(np.float32))
    assert (tmp_path / "half.npz").stat().st_size < 0.6 * (tmp_path / "full.npz").stat().st_size
    # The identifier covers the weights: the float32 copy is the same model, float16 is not.
    full.prepare_for_coding()
    half.prepare_for_coding()
    assert full.model_id.numpy() == model.model_id.numpy() != half.model_id.numpy()
    image = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    assert full.compress(image).numpy() == model.compress(image).numpy()


def test_damaged_or_mismatched_weights_are_refused(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a hific-tf weights file"):
        zoo.load_weights(tmp_path / "junk.npz")
    model = make_tiny_model(seed=0)
    zoo.save_weights(model, tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as stored:
        arrays = dict(stored)
    del arrays["w0003"]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(UserError, match="does not match the architecture"):
        zoo.load_weights(tmp_path / "short.npz")


def test_unknown_bundled_name_lists_what_is_bundled():
    with pytest.raises(UserError, match="no bundled model named 'nope'"):
        zoo.load_bundled("nope")


def test_bundle_command_writes_weights_and_reports_float16_changes(tmp_path, tiny_checkpoint,
                                                                  photos):
    from conftest import run_cli

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / photos[0].name).write_bytes(photos[0].read_bytes())
    result = run_cli("bundle", f"--model={tiny_checkpoint}", "--name=test-model",
                     f"--output={tmp_path}", f"--check_images={folder}",
                     f"--reference_image={photos[0]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "test-model.npz").is_file()
    assert "pixels differ, PSNR between decodes" in result.stdout
    # The reference: the stored (float16) model's coding of the photo's centre crop.
    json_path, png_path = zoo.reference_paths("test-model", tmp_path)
    reference = json.loads(json_path.read_text())
    assert reference["image"] == photos[0].name and reference["crop"] == zoo.REFERENCE_CROP
    stored = zoo.load_weights(tmp_path / "test-model.npz").prepare_for_coding()
    crop = zoo.reference_crop(read_image(photos[0]))
    assert crop.shape == (zoo.REFERENCE_CROP, zoo.REFERENCE_CROP, 3)
    data = stored.compress(crop).numpy()
    assert len(data) == reference["bytes"]
    np.testing.assert_array_equal(stored.decompress(data).numpy(), read_image(png_path))
    # Existing weights and references are kept unless --overwrite is given.
    again = run_cli("bundle", f"--model={tiny_checkpoint}", "--name=test-model",
                    f"--output={tmp_path}", f"--reference_image={photos[0]}")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_weights_folder_can_be_pointed_elsewhere(tmp_path, monkeypatch):
    zoo.save_weights(make_tiny_model(seed=0), tmp_path / "elsewhere.npz")
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    assert zoo.bundled_folder() == tmp_path and zoo.bundled_names() == ["elsewhere"]
    assert zoo.load_bundled("elsewhere").model_id is not None
