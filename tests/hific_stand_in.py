"""A stand-in for the published HiFiC metagraphs, built from this project's architecture.

The real hific-lo/-mi/-hi files cannot be downloaded here, so tests build a graph of the
same kind: tf.compat.v1 graph mode, every weight a constant (taken from a Keras HiFiC at a
small width), signatures "sender" (uint8 image [1, H, W, 3] → rank-1 tensors) and
"receiver" (those tensors → float image on the [0, 255] scale), and the range-coding ops of
the published graphs (PmfToQuantizedCdf, UnboundedIndexRangeEncode/Decode). The networks
are written out in raw TF ops from HIFIC_SPEC.md, independently of the Keras layers.

`omit` drops parts of the architecture to produce graphs that an importer must refuse.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression  # noqa: F401  Registers the range-coding ops.
from tensorflow_compression.python.ops import gen_ops

from hific_tf.model import HiFiC

PRECISION = 16
OVERFLOW_WIDTH = 4
TAIL = 8.0  # the y CDFs cover mean +- TAIL scales


# The weights being frozen, read eagerly before the graph is built: variable ref → value.
_frozen: dict = {}


def _values(layer: tf.keras.layers.Layer) -> list[np.ndarray]:
    return [_frozen[weight.ref()] for weight in layer.weights]


def _norm(x: tf.Tensor, norm: tf.keras.layers.Layer, epsilon: float) -> tf.Tensor:
    gamma, beta = _values(norm)
    channels = x.shape[-1]
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    variance = tf.reduce_sum(tf.square(x - mean), axis=-1, keepdims=True) / (channels - 1)
    return tf.constant(gamma) * ((x - mean) * tf.math.rsqrt(variance + epsilon)) + beta


def _conv(x: tf.Tensor, layer: tf.keras.layers.Layer) -> tf.Tensor:
    kernel, bias = _values(layer)
    if isinstance(layer, tf.keras.layers.Conv2DTranspose):
        shape = tf.shape(x)
        stride = layer.strides[0]
        output_shape = tf.stack([shape[0], shape[1] * stride, shape[2] * stride,
                                 kernel.shape[2]])
        y = tf.nn.conv2d_transpose(x, tf.constant(kernel), output_shape, stride, "SAME")
    else:
        y = tf.nn.conv2d(x, tf.constant(kernel), layer.strides[0], "SAME")
    y = tf.nn.bias_add(y, tf.constant(bias))
    return tf.nn.relu(y) if layer.activation is tf.keras.activations.relu else y


def _encoder(x: tf.Tensor, model: HiFiC, omit: set[str]) -> tf.Tensor:
    layers = model.encoder.layers
    epsilon = model.config.norm_epsilon
    for position in range(0, len(layers) - 1, 3):
        x = _conv(x, layers[position])
        if not (position == 3 and "encoder_norm" in omit):
            x = _norm(x, layers[position + 1], epsilon)
        x = tf.nn.relu(x)
    return _conv(x, layers[-1])


def _generator(y_hat: tf.Tensor, model: HiFiC, omit: set[str]) -> tf.Tensor:
    generator = model.generator
    epsilon = model.config.norm_epsilon
    first_norm, head_conv, head_norm = generator.head.layers
    head = _norm(_conv(_norm(y_hat, first_norm, epsilon), head_conv), head_norm, epsilon)
    hidden = head
    blocks = generator.residual_blocks[:-1] if "residual_block" in omit else \
        generator.residual_blocks
    for block in blocks:
        inner = tf.nn.relu(_norm(_conv(hidden, block.conv_a), block.norm_a, epsilon))
        hidden = hidden + _norm(_conv(inner, block.conv_b), block.norm_b, epsilon)
    x = head + hidden
    tail = generator.tail.layers
    for position in range(0, len(tail) - 1, 3):
        x = tf.nn.relu(_norm(_conv(x, tail[position]), tail[position + 1], epsilon))
    return _conv(x, tail[-1])


def _synthesis(z_hat: tf.Tensor, network: tf.keras.Sequential) -> tf.Tensor:
    for layer in network.layers:
        z_hat = _conv(z_hat, layer)
    return z_hat


def _gaussian_pmfs(scales: list[float]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per scale, the pmf of round(N(0, s)) over -T..T plus the overflow bin, and -T."""
    pmfs, offsets = [], []
    for scale in scales:
        bound = math.ceil(TAIL * scale)
        edges = np.arange(-bound - 0.5, bound + 1.5)
        cdf = np.array([0.5 * math.erfc(-edge / (scale * math.sqrt(2))) for edge in edges])
        pmf = np.diff(cdf)
        pmfs.append(np.append(pmf, max(1.0 - pmf.sum(), 1e-9)).astype(np.float32))
        offsets.append(-bound)
    return pmfs, np.array(offsets, np.int32)


def _z_pmfs(model: HiFiC) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """z's pmfs (overflow bin last), offsets and quantisation offsets, from the model's own
    prior via its tensorflow-compression 2.x tables."""
    if not model.hyperprior.prepared:
        model.prepare_for_coding()
    cdf, cdf_offset, quantization_offset = model.coding_tables.z
    pmfs, position = [], 0
    for _ in range(len(cdf_offset)):
        # tfc 2.x rows are [-precision, 0, ..., 2^precision], one after another.
        precision = -int(cdf[position])
        end = position + 1 + int(np.argmax(cdf[position + 1:] == 2 ** precision))
        pmfs.append((np.diff(cdf[position + 1:end + 1]) / 2.0 ** precision).astype(np.float32))
        position = end + 1
    return pmfs, cdf_offset.astype(np.int32), quantization_offset


def _cdf_table(pmfs: list[np.ndarray]) -> tuple[tf.Tensor, np.ndarray]:
    """PmfToQuantizedCdf of each pmf, padded into one table, and each row's length."""
    rows = [gen_ops.pmf_to_quantized_cdf(tf.constant(pmf), precision=PRECISION)
            for pmf in pmfs]
    width = max(len(pmf) for pmf in pmfs) + 1
    table = tf.stack([tf.pad(row, [[0, width - len(pmf) - 1]], constant_values=2**PRECISION)
                      for row, pmf in zip(rows, pmfs, strict=True)])
    return table, np.array([len(pmf) + 1 for pmf in pmfs], np.int32)


def build_stand_in(model: HiFiC, omit: set[str] | frozenset = frozenset()
                   ) -> tf.compat.v1.MetaGraphDef:
    """The published-model MetaGraphDef of `model` (with `omit`ted parts left out)."""
    config = model.config
    multiple = config.pad_multiple
    z_pmfs, z_offsets, z_quantization = _z_pmfs(model)
    _frozen.clear()
    _frozen.update({weight.ref(): weight.numpy() for weight in model.weights})
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        z_cdf, z_sizes = _cdf_table(z_pmfs)
        y_pmfs, y_offsets = _gaussian_pmfs(config.scale_table())
        y_cdf, y_sizes = _cdf_table(y_pmfs)
        log_min = math.log(config.scale_min)
        log_step = (math.log(config.scale_max) - log_min) / (config.num_scales - 1)

        def means_and_indexes(z_hat: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            mean = _synthesis(z_hat, model.hyperprior.synthesis_mean)
            scale = _synthesis(z_hat, model.hyperprior.synthesis_scale)
            index = (tf.math.log(tf.maximum(scale, config.scale_min)) - log_min) / log_step
            index = tf.clip_by_value(tf.round(index), 0, config.num_scales - 1)
            return mean, tf.cast(index, tf.int32)

        def z_indexes(shape: tf.Tensor) -> tf.Tensor:
            return tf.broadcast_to(tf.range(config.hyper_channels), shape)

        def code(function, *args, **kwargs) -> tf.Tensor:
            return function(*args, precision=PRECISION, overflow_width=OVERFLOW_WIDTH,
                            **kwargs)

        # Sender.
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="input_image")
        size = tf.shape(image)[1:3]
        pad = (multiple - size % multiple) % multiple
        x = tf.pad(tf.cast(image, tf.float32) / 255.0,
                   [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]], mode="REFLECT")
        y = _encoder(x, model, set(omit))
        z = _synthesis(y, model.hyperprior.analysis)
        z_symbols = tf.cast(tf.round(z - z_quantization), tf.int32)
        z_string = code(gen_ops.unbounded_index_range_encode, z_symbols,
                        z_indexes(tf.shape(z_symbols)), z_cdf, z_sizes, z_offsets)
        mean, index = means_and_indexes(tf.cast(z_symbols, tf.float32) + z_quantization)
        y_symbols = tf.cast(tf.round(y - mean), tf.int32)
        y_string = code(gen_ops.unbounded_index_range_encode, y_symbols, index, y_cdf,
                        y_sizes, y_offsets)
        sent = {"z": tf.reshape(z_string, [1]), "y": tf.reshape(y_string, [1]),
                "size": size}

        # Receiver.
        got_z = tf.compat.v1.placeholder(tf.string, [1], name="z_string")
        got_y = tf.compat.v1.placeholder(tf.string, [1], name="y_string")
        got_size = tf.compat.v1.placeholder(tf.int32, [2], name="image_size")
        z_side = (got_size + multiple - 1) // multiple
        z_shape = tf.concat([[1], z_side, [config.hyper_channels]], axis=0)
        z_hat = code(gen_ops.unbounded_index_range_decode, got_z[0], z_indexes(z_shape),
                     z_cdf, z_sizes, z_offsets)
        mean, index = means_and_indexes(tf.cast(z_hat, tf.float32) + z_quantization)
        y_hat = code(gen_ops.unbounded_index_range_decode, got_y[0], index, y_cdf, y_sizes,
                     y_offsets)
        output = _generator(tf.cast(y_hat, tf.float32) + mean, model, set(omit))
        output = output[:, :got_size[0], :got_size[1]] * 255.0
        received = {"z": got_z, "y": got_y, "size": got_size}

        build = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
        meta_graph.signature_def["sender"].CopyFrom(build(
            inputs={"image": info(image)},
            outputs={key: info(tensor) for key, tensor in sent.items()}))
        meta_graph.signature_def["receiver"].CopyFrom(build(
            inputs={key: info(tensor) for key, tensor in received.items()},
            outputs={"output_image": info(output)}))
    return meta_graph


def randomise(model: HiFiC, seed: int = 0) -> HiFiC:
    """Gives every ChannelNorm a non-trivial gamma and beta and moves z's prior away from its
    (deterministic) initial value, so that a mis-imported norm or coding table shows in the
    output; returns the model."""
    from hific_tf.layers import ChannelNorm

    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, ChannelNorm):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.uniform(-0.2, 0.2, layer.beta.shape))
    for variable in model.hyperprior.z_prior.trainable_variables:
        variable.assign_add(rng.normal(0.0, 0.5, variable.shape))
    return model
