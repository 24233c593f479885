"""LPIPS: the Keras AlexNet, the frozen-graph converter and its cache, against stand-in graphs.

The official `net-lin_alex_v0.1.pb` cannot be downloaded here, so each stand-in is built the
way that file was made (LPIPS's PyTorch model through ONNX to TensorFlow by onnx-tf): NCHW
placeholders "0" and "1" for images in [-1, 1]; per convolution an OIHW Const transposed to
HWIO in the graph, split into one group, an explicit Pad, transposes to NHWC and back around
a VALID Conv2D, an Identity for the one-group concat, then the bias Add; norms reshaped to
[N, 1, H, W] (ten Reshapes) and the distance reshaped to [N, 1, 1, 1] as "Reshape_10:0".
Random AlexNet-shaped weights; running the graph itself is the reference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.cache import MissingResourceError, cached_path
from hific_tf.errors import UserError
from hific_tf.perceptual.lpips import (
    LPIPS,
    convert_frozen_graph,
    converted_weights_path,
    load_lpips,
    lpips_resource,
    perceptual_loss,
    unit_normalise,
)

# torchvision AlexNet features up to relu5: (kernel, stride, padding, width); pooling before
# the second and third convolutions. LPIPS v0.1's scaling layer and normalisation epsilon.
GEOMETRY = ((11, 4, 2, 64), (5, 1, 2, 192), (3, 1, 1, 384), (3, 1, 1, 256), (3, 1, 1, 256))
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPSILON = 1e-10


def _conv(x: tf.Tensor, kernel_oihw: tf.Tensor, bias: tf.Tensor | None, stride: int,
          padding: int) -> tf.Tensor:
    """onnx-tf's Conv on CPU: NCHW in and out, computed in NHWC."""
    (kernel,) = tf.split(tf.transpose(kernel_oihw, [2, 3, 1, 0]), 1, axis=-1)
    if padding:
        x = tf.pad(x, [[0, 0], [0, 0], [padding, padding], [padding, padding]])
    y = tf.nn.convolution(tf.transpose(x, [0, 2, 3, 1]), kernel, strides=stride,
                          padding="VALID")
    y = tf.concat([y], axis=-1)
    if bias is not None:
        y = tf.add(y, bias)
    return tf.transpose(y, [0, 3, 1, 2])


def _max_pool(x: tf.Tensor) -> tf.Tensor:
    pooled = tf.nn.max_pool2d(tf.transpose(x, [0, 2, 3, 1]), 3, 2, "VALID")
    return tf.transpose(pooled, [0, 3, 1, 2])


def _normalise(features: tf.Tensor) -> tf.Tensor:
    norm = tf.sqrt(tf.reduce_sum(tf.pow(features, 2.0), axis=1))
    shape = tf.shape(features)
    norm = tf.reshape(norm, tf.stack([shape[0], 1, shape[2], shape[3]]))
    return features / (norm + EPSILON)


def write_stand_in(path: Path, widths: tuple[int, ...] = tuple(g[3] for g in GEOMETRY),
                   skip: int | None = None, shift: tuple[float, ...] = SHIFT,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Writes a stand-in frozen graph; returns its weights in PyTorch layout (OIHW).

    `widths` sets the convolutions' output channels; `skip` leaves one convolution out (its
    stage passes the previous features on); `shift` replaces the scaling layer's shift.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    channels = 3
    for index, ((size, _, _, _), width) in enumerate(zip(GEOMETRY, widths, strict=True)):
        if index != skip:
            fan_in = channels * size * size
            weights[f"conv{index + 1}"] = rng.normal(
                0.0, np.sqrt(2.0 / fan_in), (width, channels, size, size)).astype(np.float32)
            weights[f"bias{index + 1}"] = rng.normal(0.0, 0.05, width).astype(np.float32)
            channels = width
        weights[f"lin{index}"] = np.abs(rng.normal(0.0, 0.1, (1, channels, 1, 1))).astype(
            np.float32)
    graph = tf.Graph()
    with graph.as_default():
        constants = {key: tf.constant(value) for key, value in weights.items()}
        shift_nchw = tf.constant(np.reshape(shift, (1, 3, 1, 1)), tf.float32)
        scale_nchw = tf.constant(np.reshape(SCALE, (1, 3, 1, 1)), tf.float32)
        outputs = []
        for name in ("0", "1"):
            x = tf.compat.v1.placeholder(tf.float32, [None, 3, None, None], name=name)
            x = (x - shift_nchw) / scale_nchw
            stages = []
            for index, (_, stride, padding, _) in enumerate(GEOMETRY):
                if index in (1, 2):
                    x = _max_pool(x)
                if index != skip:
                    x = tf.nn.relu(_conv(x, constants[f"conv{index + 1}"],
                                         constants[f"bias{index + 1}"], stride, padding))
                stages.append(x)
            outputs.append(stages)
        total = None
        for index, (features_0, features_1) in enumerate(zip(*outputs, strict=True)):
            difference = tf.pow(_normalise(features_0) - _normalise(features_1), 2.0)
            head = _conv(difference, constants[f"lin{index}"], None, 1, 0)
            mean = tf.reduce_mean(tf.reduce_mean(head, axis=3), axis=2)
            total = mean if total is None else total + mean
        shape = tf.shape(total)
        distance = tf.reshape(total, tf.stack([shape[0], shape[1], 1, 1]))
    assert distance.name == "Reshape_10:0"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return weights


def run_graph(pb_path: Path, images_a: np.ndarray, images_b: np.ndarray) -> np.ndarray:
    """The graph's own distances for NHWC images in [0, 1] (fed as NCHW in [-1, 1])."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb_path.read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        feed = {"0:0": np.transpose(images_a * 2.0 - 1.0, (0, 3, 1, 2)),
                "1:0": np.transpose(images_b * 2.0 - 1.0, (0, 3, 1, 2))}
        return session.run("Reshape_10:0", feed).reshape(-1)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("stand_in") / "net-lin_alex_v0.1.pb"
    return path, write_stand_in(path)


@pytest.fixture(scope="module")
def network(stand_in: tuple[Path, dict[str, np.ndarray]]) -> LPIPS:
    """LPIPS with the stand-in's weights, converted from its graph."""
    model = LPIPS()
    model.assign_weights(convert_frozen_graph(stand_in[0]))
    return model


def images(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth random images in [0, 1] (a blurred noise field, so not pure noise)."""
    noise = np.random.default_rng(seed).uniform(0.0, 1.0, shape).astype(np.float32)
    return np.clip((noise + np.roll(noise, 1, axis=1) + np.roll(noise, 1, axis=2)) / 3.0,
                   0.0, 1.0)


def test_layer_shapes_are_alexnets() -> None:
    model = LPIPS()
    kernels = [tuple(conv.kernel.shape) for conv in model.convs]
    assert kernels == [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256),
                       (3, 3, 256, 256)]
    assert [tuple(conv.bias.shape) for conv in model.convs] == [(64,), (192,), (384,), (256,),
                                                                (256,)]
    assert [tuple(head.kernel.shape) for head in model.heads] == [
        (1, 1, 64, 1), (1, 1, 192, 1), (1, 1, 384, 1), (1, 1, 256, 1), (1, 1, 256, 1)]
    assert model.trainable_weights == [] and len(model.weights) == 15
    # 64 → conv 11/4 pad 2 → 15 → pool 3/2 → 7 → conv 5 pad 2 → 7 → pool → 3 → 3 → 3 → 3.
    features = model.features(tf.zeros([1, 64, 64, 3]))
    assert [tuple(f.shape) for f in features] == [(1, 15, 15, 64), (1, 7, 7, 192),
                                                  (1, 3, 3, 384), (1, 3, 3, 256),
                                                  (1, 3, 3, 256)]


def test_conversion_reads_the_weights_into_keras_layout(
        stand_in: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, official = stand_in
    weights = convert_frozen_graph(path)
    for index in range(5):
        np.testing.assert_array_equal(weights[f"conv{index + 1}/kernel"],
                                      official[f"conv{index + 1}"].transpose(2, 3, 1, 0))
        np.testing.assert_array_equal(weights[f"conv{index + 1}/bias"],
                                      official[f"bias{index + 1}"])
        np.testing.assert_array_equal(weights[f"lin{index}/kernel"],
                                      official[f"lin{index}"].transpose(2, 3, 1, 0))


def test_matches_the_frozen_graph(stand_in: tuple[Path, dict[str, np.ndarray]],
                                  network: LPIPS) -> None:
    images_a, images_b = images((3, 72, 96, 3), seed=1), images((3, 72, 96, 3), seed=2)
    images_b[0] = images_a[0]  # one identical pair among different ones
    expected = run_graph(stand_in[0], images_a, images_b)
    got = network((tf.constant(images_a), tf.constant(images_b))).numpy()
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got[0] < 1e-7 and expected[1] > 1e-3 and expected[2] > 1e-3


def test_loads_through_the_cache_and_converts_once(
        stand_in: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    graph = cached_path(lpips_resource, tmp_path)
    graph.parent.mkdir(parents=True)
    shutil.copy(stand_in[0], graph)
    first = load_lpips(cache_dir=tmp_path, offline=True)
    converted = converted_weights_path(tmp_path)
    assert converted == tmp_path / "lpips" / "lpips_alex_v0.1_keras.npz"
    assert converted.is_file()
    graph.unlink()  # the second load must not need the graph
    second = load_lpips(cache_dir=tmp_path, offline=True)
    for a, b in zip(first.weights, second.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(second.convs[0].kernel.numpy(),
                                  stand_in[1]["conv1"].transpose(2, 3, 1, 0))


def test_distance_is_zero_for_equal_images_and_differentiable(network: LPIPS) -> None:
    x = tf.constant(images((2, 64, 64, 3), seed=3))
    y = tf.Variable(images((2, 64, 64, 3), seed=4))
    np.testing.assert_array_less(network((x, x)).numpy(), 1e-7)
    loss = perceptual_loss(network)
    with tf.GradientTape() as tape:
        distances = loss(x, y)
    gradient = tape.gradient(distances, y).numpy()
    assert distances.shape == (2,) and np.all(distances.numpy() > 1e-3)
    assert np.all(np.isfinite(gradient)) and np.abs(gradient).max() > 0


def test_computes_in_float32_under_mixed_precision(network: LPIPS) -> None:
    images_a, images_b = images((1, 64, 64, 3), seed=7), images((1, 64, 64, 3), seed=8)
    expected = network((images_a, images_b)).numpy()
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = LPIPS()
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(network.get_weights())
    got = mixed((tf.constant(images_a), tf.constant(images_b)))
    assert got.dtype == tf.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


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


@pytest.mark.parametrize("variant, message", [
    (dict(skip=3), "4 AlexNet convolutions one after another, expected 5"),
    (dict(widths=(64, 192, 320, 256, 256)),
     "conv3/kernel has shape (3, 3, 192, 320), expected (3, 3, 192, 384)"),
    (dict(shift=(0.0, 0.0, 0.0)), "where LPIPS with its weights gives"),
])
def test_refuses_other_graphs(tmp_path: Path, variant: dict, message: str) -> None:
    path = tmp_path / "other.pb"
    write_stand_in(path, **variant)
    with pytest.raises(UserError) as caught:
        convert_frozen_graph(path)
    text = str(caught.value)
    assert message in text and str(path) in text and "\n" not in text


def test_refuses_a_file_that_is_not_a_graph(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pb"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="not a TensorFlow GraphDef"):
        convert_frozen_graph(path)


def test_offline_without_weights_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MissingResourceError) as caught:
        load_lpips(cache_dir=tmp_path, offline=True)
    assert str(tmp_path / "lpips" / "net-lin_alex_v0.1.pb") in str(caught.value)
    assert not converted_weights_path(tmp_path).exists()


def test_corrupt_converted_file_says_to_delete_it(tmp_path: Path) -> None:
    converted = converted_weights_path(tmp_path)
    converted.parent.mkdir(parents=True)
    np.savez(converted, unrelated=np.zeros(3))
    with pytest.raises(UserError, match="delete it") as caught:
        load_lpips(cache_dir=tmp_path, offline=True)
    assert str(converted) in str(caught.value)
