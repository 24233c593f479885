"""LPIPS (AlexNet, linear-calibrated, v0.1) as a Keras network, with the official weights.

LPIPS(x, y) sums, over AlexNet's five ReLU stages, the spatial mean of a non-negative 1x1
linear head applied to the squared difference of the channel-unit-normalised features. The
weights come from the frozen graph HiFiC trains with (`net-lin_alex_v0.1.pb`, exported from
PyTorch through ONNX): `convert_frozen_graph` finds them by the graph's data flow, checks the
result against the graph's own output, and `load_lpips` keeps the converted weights in the
cache so that the graph is converted only once.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from hific_tf import cache
from hific_tf.errors import UserError
from hific_tf.files import atomic_writer

lpips_resource = cache.Resource(
    name="lpips/net-lin_alex_v0.1.pb",
    url="http://rail.eecs.berkeley.edu/models/lpips/net-lin_alex_v0.1.pb",
    description="the LPIPS AlexNet v0.1 frozen graph")
CONVERTED_NAME = "lpips/lpips_alex_v0.1_keras.npz"  # the converted weights, in the cache

# The frozen graph's tensors: two NCHW images in [-1, 1] and the [batch, 1, 1, 1] distance.
GRAPH_INPUTS = ("0:0", "1:0")
GRAPH_OUTPUT = "Reshape_10:0"

# torchvision's AlexNet features up to relu5: (kernel size, stride, padding, channels) per
# convolution, each followed by a ReLU; a 3x3 stride-2 max-pooling precedes conv2 and conv3.
ALEXNET = ((11, 4, 2, 64), (5, 1, 2, 192), (3, 1, 1, 384), (3, 1, 1, 256), (3, 1, 1, 256))
POOLED = (1, 2)  # indices of the convolutions preceded by max-pooling
# v0.1's scaling layer: (x - shift) / scale per RGB channel, on images in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPSILON = 1e-10  # features / (L2 norm over channels + EPSILON), outside the square root
# The squared norm is floored before the square root so that its gradient is finite where
# a feature vector is all zero (common after a ReLU): XLA (jit_compile, TPUs) computes
# 0.5 * dy / sqrt(0) = NaN there. The floor moves the norm by at most 1e-18, far below
# EPSILON, so the distance is unchanged.
NORM_FLOOR = 1e-36
# Converted weights must reproduce the graph's distances to this relative tolerance.
VERIFY_RTOL = 1e-4


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """Name → Keras (HWIO) shape of every LPIPS weight: conv1..conv5 kernels and biases, and
    the linear heads lin0..lin4 (one per ReLU stage, 1x1 convolutions without bias)."""
    shapes = {}
    channels = 3
    for index, (size, _, _, width) in enumerate(ALEXNET):
        shapes[f"conv{index + 1}/kernel"] = (size, size, channels, width)
        shapes[f"conv{index + 1}/bias"] = (width,)
        shapes[f"lin{index}/kernel"] = (1, 1, width, 1)
        channels = width
    return shapes


def unit_normalise(features: tf.Tensor) -> tf.Tensor:
    """Divides each feature vector by its L2 norm over channels (plus EPSILON)."""
    squared = tf.reduce_sum(tf.square(features), axis=-1, keepdims=True)
    return features / (tf.sqrt(tf.maximum(squared, NORM_FLOOR)) + EPSILON)


class LPIPS(tf.keras.Model):
    """LPIPS distance (AlexNet, linear heads, v0.1) between two batches of images.

    Takes float images in [0, 1], NHWC, at least 31x31 pixels, and maps them to [-1, 1], the
    range LPIPS was calibrated on, before the fixed scaling layer. Computes in float32 whatever
    the global precision policy. The weights are frozen (LPIPS is a fixed metric); gradients
    flow to the images, so `k_P * LPIPS` can train a codec.
    """

    def __init__(self, name: str = "lpips") -> None:
        super().__init__(name=name, dtype="float32")  # not cast to a mixed policy's float16
        self.convs = []
        self.heads = []
        channels = 3
        for index, (size, stride, _, width) in enumerate(ALEXNET):
            conv = tf.keras.layers.Conv2D(width, size, strides=stride, activation="relu",
                                          name=f"conv{index + 1}", dtype="float32")
            conv.build((None, None, None, channels))
            head = tf.keras.layers.Conv2D(1, 1, use_bias=False, name=f"lin{index}",
                                          dtype="float32")
            head.build((None, None, None, width))
            self.convs.append(conv)
            self.heads.append(head)
            channels = width
        self.trainable = False

    def _weight_variables(self) -> dict[str, tf.Variable]:
        variables = {}
        for index, (conv, head) in enumerate(zip(self.convs, self.heads, strict=True)):
            variables[f"conv{index + 1}/kernel"] = conv.kernel
            variables[f"conv{index + 1}/bias"] = conv.bias
            variables[f"lin{index}/kernel"] = head.kernel
        return variables

    def assign_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Sets every weight from a `weight_shapes()`-keyed mapping (ValueError if it does
        not match)."""
        variables = self._weight_variables()
        if set(weights) != set(variables):
            raise ValueError(f"expected weights {sorted(variables)}, got {sorted(weights)}")
        for key, variable in variables.items():
            value = np.asarray(weights[key])
            if value.shape != tuple(variable.shape):
                raise ValueError(f"{key} has shape {value.shape}, expected "
                                 f"{tuple(variable.shape)}")
            variable.assign(value.astype(np.float32))

    def features(self, images: tf.Tensor) -> list[tf.Tensor]:
        """AlexNet's relu1..relu5 outputs (NHWC) for images in [0, 1]."""
        shift = tf.constant(SHIFT, tf.float32)
        scale = tf.constant(SCALE, tf.float32)
        x = (tf.cast(images, tf.float32) * 2.0 - 1.0 - shift) / scale
        outputs = []
        for index, conv in enumerate(self.convs):
            if index in POOLED:
                x = tf.nn.max_pool2d(x, 3, 2, "VALID")
            padding = ALEXNET[index][2]
            x = conv(tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]]))
            outputs.append(x)
        return outputs

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """Per-image LPIPS distance [batch] between `images_a` and `images_b` in [0, 1]."""
        images_a, images_b = inputs
        batch = tf.shape(images_a)[0]
        distance = 0.0
        both = tf.concat([images_a, images_b], axis=0)  # one AlexNet pass for both
        for head, features in zip(self.heads, self.features(both), strict=True):
            normalised = unit_normalise(features)
            difference = tf.square(normalised[:batch] - normalised[batch:])
            distance += tf.reduce_mean(head(difference), axis=[1, 2, 3])
        return distance


def perceptual_loss(lpips: LPIPS) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """The trainer's perceptual loss: (images, reconstructions) in [0, 1], NHWC → per-image
    LPIPS [batch]."""

    def loss(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
        return lpips((images, reconstructions))

    return loss


def _refusal(pb_path: Path, problem: str) -> UserError:
    return UserError(f"{pb_path} is not the LPIPS AlexNet v0.1 graph this converter knows "
                     f"({problem}); delete it and place the file from {lpips_resource.url} "
                     f"there")


def _import_graph(pb_path: Path) -> tf.Graph:
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(pb_path.read_bytes())
    except DecodeError:
        raise _refusal(pb_path, "not a TensorFlow GraphDef") from None
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.graph_util.import_graph_def(graph_def, name="")
        except (ValueError, tf.errors.OpError) as error:
            raise _refusal(pb_path, f"TensorFlow cannot import it: "
                                    f"{str(error).splitlines()[0]}") from None
    return graph


def _downstream(tensor: tf.Tensor) -> set[tf.Operation]:
    """Every operation whose value depends on `tensor`."""
    reached, frontier = set(), list(tensor.consumers())
    while frontier:
        operation = frontier.pop()
        if operation not in reached:
            reached.add(operation)
            frontier.extend(c for output in operation.outputs for c in output.consumers())
    return reached


def _upstream_count(operation: tf.Operation, among: set[tf.Operation]) -> int:
    """How many operations of `among` feed `operation`, directly or not."""
    seen, frontier = set(), [t.op for t in operation.inputs]
    while frontier:
        current = frontier.pop()
        if current not in seen:
            seen.add(current)
            frontier.extend(t.op for t in current.inputs)
    return len(seen & among)


def _in_order(convs: set[tf.Operation], trunk: set[tf.Operation], pb_path: Path,
              what: str) -> list[tf.Operation]:
    """`convs` sorted along the data flow: by how many AlexNet (`trunk`) convolutions feed
    each, which must differ from one to the next."""
    depth = {conv: _upstream_count(conv, trunk) for conv in convs}
    if len(convs) != len(ALEXNET) or len(set(depth.values())) != len(convs):
        raise _refusal(pb_path, f"{len(convs)} {what} convolutions one after another, "
                                f"expected {len(ALEXNET)}")
    return sorted(convs, key=depth.__getitem__)


# Operations between a convolution and its bias addition that only move data around.
_PASS_THROUGH = ("Identity", "ConcatV2", "Transpose")
_ADDITIONS = ("Add", "AddV2", "BiasAdd")


def _bias_of(conv: tf.Operation, variable: set[tf.Operation], pb_path: Path,
             index: int) -> tf.Tensor:
    """The constant added to `conv`'s output, following it through layout-only operations."""
    tensor = conv.outputs[0]
    while len(tensor.consumers()) == 1:
        consumer = tensor.consumers()[0]
        if consumer.type in _ADDITIONS:
            others = [t for t in consumer.inputs if t is not tensor]
            if len(others) == 1 and others[0].op not in variable:
                return others[0]
            break
        if consumer.type not in _PASS_THROUGH:
            break
        tensor = consumer.outputs[0]
    raise _refusal(pb_path, f"no constant bias after convolution {index + 1}")


def convert_frozen_graph(pb_path: str | Path) -> dict[str, np.ndarray]:
    """The LPIPS weights (`weight_shapes()` names, Keras HWIO layout) in a frozen graph.

    Found by structure, not by node names: the Conv2D operations fed by input "0:0" alone
    are AlexNet's, those fed by both inputs are the linear heads, each set ordered along the
    data flow. Each kernel is the value of its Conv2D's filter operand, which TensorFlow
    defines as HWIO (so the graph's own transposes from PyTorch's OIHW are evaluated, not
    guessed); each bias is the constant added after its convolution. The converted weights
    must then reproduce the graph's distances on two random pairs, else the graph is refused.
    """
    pb_path = Path(pb_path)
    graph = _import_graph(pb_path)
    try:
        inputs = [graph.get_tensor_by_name(name) for name in GRAPH_INPUTS]
        output = graph.get_tensor_by_name(GRAPH_OUTPUT)
    except (KeyError, ValueError):
        raise _refusal(pb_path, f"it lacks the tensors {', '.join(GRAPH_INPUTS)} or "
                                f"{GRAPH_OUTPUT}") from None
    from_a, from_b = (_downstream(tensor) for tensor in inputs)
    variable = from_a | from_b  # everything that depends on the images
    convs = {op for op in variable if op.type == "Conv2D"}
    trunk_set = convs - from_b
    trunk = _in_order(trunk_set, trunk_set, pb_path, "AlexNet")
    heads = _in_order(convs & from_a & from_b, trunk_set, pb_path, "linear-head")
    if any(op.inputs[1].op in variable for op in trunk + heads):
        raise _refusal(pb_path, "a convolution's kernel depends on the images")
    biases = [_bias_of(op, variable, pb_path, index) for index, op in enumerate(trunk)]
    images_a, images_b = np.random.default_rng(0).uniform(
        0.0, 1.0, (2, 2, 64, 80, 3)).astype(np.float32)
    feed = {tensor: np.transpose(images * 2.0 - 1.0, (0, 3, 1, 2))
            for tensor, images in zip(inputs, (images_a, images_b), strict=True)}
    with tf.compat.v1.Session(graph=graph) as session:
        try:
            kernels, bias_values, expected = session.run(
                ([op.inputs[1] for op in trunk + heads], biases, output), feed)
        except tf.errors.OpError as error:
            raise _refusal(pb_path, f"TensorFlow cannot run it: "
                                    f"{error.message.splitlines()[0]}") from None
    weights = {}
    for index in range(len(ALEXNET)):
        weights[f"conv{index + 1}/kernel"] = kernels[index]
        weights[f"conv{index + 1}/bias"] = bias_values[index].reshape(-1)
        weights[f"lin{index}/kernel"] = kernels[len(ALEXNET) + index]
    for key, shape in weight_shapes().items():
        if weights[key].shape != shape:
            raise _refusal(pb_path, f"{key} has shape {weights[key].shape}, expected {shape}")
    network = LPIPS()
    network.assign_weights(weights)
    got = network((images_a, images_b)).numpy()
    expected = expected.reshape(-1)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=VERIFY_RTOL, atol=0):
        raise _refusal(pb_path, f"it computes {expected.tolist()} where LPIPS with its "
                                f"weights gives {got.tolist()}")
    return weights


def converted_weights_path(cache_dir: str | Path | None = None) -> Path:
    """Where `load_lpips` keeps the converted weights."""
    return cache.cache_dir(cache_dir) / CONVERTED_NAME


def _save(weights: Mapping[str, np.ndarray], path: Path) -> None:
    with atomic_writer(path) as stream:
        np.savez(stream, **weights)


def load_lpips(cache_dir: str | Path | None = None, offline: bool | None = None) -> LPIPS:
    """LPIPS with the official weights: converted from the cached (or downloaded) frozen
    graph the first time, read from the converted file in the cache afterwards."""
    path = converted_weights_path(cache_dir)
    if not path.is_file():
        _save(convert_frozen_graph(cache.fetch(lpips_resource, cache_dir, offline)), path)
    network = LPIPS()
    try:
        with np.load(path) as stored:
            network.assign_weights({key: stored[key] for key in stored.files})
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a valid converted LPIPS weights file ({error}); "
                        f"delete it to convert {lpips_resource.name} again") from None
    return network
