"""A stand-in for the published HiFiC metagraphs, with the structure HIFIC_SPEC.md gives the
authors' graphs ("What the authors' code does where the paper is silent").

The real hific-lo/-mi/-hi files cannot be downloaded here, so tests build a graph of the same
kind, written by this project from the spec (no code of the authors'):

- tf.compat.v1 graph mode, frozen: every weight is a constant, no variables;
- E and G as Keras builds them ("SAME" padding) with ChannelNorm in the op pattern of
  tf.nn.batch_normalization (Mul, Mul, Sub, AddV2);
- h_a as tensorflow-compression 1.x SignalConv2D: explicit zero padding (k//2, (k-1)//2),
  kernels RDFT-parameterised (reshape(matmul(irdft_matrix, kernel_rdft)));
- h_s: transposed convolutions (Conv2DBackpropInput, explicit (2, 2), kernel transposed
  [0, 1, 3, 2]), a last 3x3 layer that correlates with a flipped kernel, outputs cropped to
  y's size; optionally RDFT-parameterised too (`rdft_synthesis`);
- the uint8 image reflect-padded at the bottom and right to a multiple of 16 (tf.pad REFLECT,
  which needs each pad below the side, as the authors' graph does);
- z quantised around per-channel medians (floor(z + (0.5 - median))), y as
  floor(y - mean + 0.5); scales lower-bounded at the first table entry, the table index the
  next greater entry (a foldr over the table); range coders UnboundedIndexRangeEncode/Decode
  with precision 16 and overflow width 4, wrapped in map_fn, CDFs made by PmfToQuantizedCdf
  in a map_fn too; with `control_flow="v1"` these are version-1 while loops (back edges
  NextIteration -> Merge), with "v2" functional While ops whose bodies are functions;
- signatures "sender" (input_image → channel:0..4 = y strings, z strings, image shape,
  y shape, z shape) and "receiver" (channel:0..4 → output_image on [0, 255], clipped).

The weights come from a Keras HiFiC of this project (any width), read as arrays; the networks
are written in raw TF ops. `omit` and `norm_pattern` produce graphs an importer must refuse.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.ops import gen_ops

from hific_tf.coding.model import HiFiC
from hific_tf.configs import ModelConfig

PRECISION = 16
OVERFLOW_WIDTH = 4
PAD_MULTIPLE = 16
Y_TAIL_MASS = 2.0 ** -8
NORM_PATTERNS = ("batch_normalization", "rsqrt", "divide")

# Names of the tensors a test reads besides the signatures.
Y_SYMBOLS = "sender_y_symbols"
Z_SYMBOLS = "sender_z_symbols"


@contextlib.contextmanager
def _control_flow(version: str) -> Iterator[None]:
    """Builds map_fn/foldr as version-1 while loops or as functional While ops."""
    was_v2 = tf.compat.v1.control_flow_v2_enabled()
    if version == "v1":
        tf.compat.v1.disable_control_flow_v2()
    else:
        tf.compat.v1.enable_control_flow_v2()
    try:
        yield
    finally:
        if was_v2:
            tf.compat.v1.enable_control_flow_v2()
        else:
            tf.compat.v1.disable_control_flow_v2()


def irdft_matrix(size: int) -> np.ndarray:
    """An orthonormal real Fourier basis of size x size kernels, as columns [k*k, k*k]:
    the Kronecker product of the 1-D basis (constant, cosines and sines) with itself."""
    positions = np.arange(size)
    columns = [np.full(size, 1.0 / math.sqrt(size))]
    for frequency in range(1, size // 2 + 1):
        angle = 2 * math.pi * frequency * positions / size
        columns.append(np.cos(angle))
        if 2 * frequency != size:
            columns.append(np.sin(angle))
    basis = np.stack(columns, axis=1)
    basis /= np.linalg.norm(basis, axis=0, keepdims=True)
    return np.kron(basis, basis).astype(np.float32)


class _Builder:
    """Writes one HiFiC graph from a Keras model's weights."""

    def __init__(self, model: HiFiC, omit: set[str], norm_pattern: str,
                 rdft_synthesis: bool) -> None:
        self.model = model
        self.config = model.config
        self.omit = omit
        self.norm_pattern = norm_pattern
        self.rdft_synthesis = rdft_synthesis
        self.values = {weight.ref(): weight.numpy() for weight in model.weights}

    def weights(self, layer: tf.keras.layers.Layer) -> list[np.ndarray]:
        return [self.values[weight.ref()] for weight in layer.weights]

    # Networks.

    def norm(self, x: tf.Tensor, layer: tf.keras.layers.Layer) -> tf.Tensor:
        gamma, beta = (tf.constant(value) for value in self.weights(layer))
        epsilon = self.config.norm_epsilon
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)),
                                 axis=-1, keepdims=True)
        variance /= tf.cast(tf.shape(x)[-1], tf.float32) - 1
        if self.norm_pattern == "batch_normalization":
            return tf.nn.batch_normalization(x, mean, variance, beta, gamma, epsilon)
        if self.norm_pattern == "rsqrt":
            return gamma * ((x - mean) * tf.math.rsqrt(variance + epsilon)) + beta
        return (x - mean) / tf.sqrt(variance + epsilon) * gamma + beta

    def keras_conv(self, x: tf.Tensor, layer: tf.keras.layers.Layer) -> tf.Tensor:
        """E's and G's layers, as Keras builds them ("SAME" padding)."""
        kernel, bias = self.weights(layer)
        if isinstance(layer, tf.keras.layers.Conv2DTranspose):
            shape = tf.shape(x)
            stride = layer.strides[0]
            output_shape = tf.stack([shape[0], shape[1] * stride, shape[2] * stride,
                                     kernel.shape[2]])
            y = tf.nn.conv2d_transpose(x, tf.constant(kernel), output_shape, stride, "SAME")
        else:
            y = tf.nn.conv2d(x, tf.constant(kernel), layer.strides[0], "SAME")
        return tf.nn.bias_add(y, tf.constant(bias))

    @staticmethod
    def rdft_kernel(kernel: np.ndarray) -> tf.Tensor:
        """`kernel` as the graph computes it from its RDFT parameters."""
        size = kernel.shape[0]
        basis = irdft_matrix(size)
        flat = kernel.reshape(size * size, -1)
        coefficients = (basis.T.astype(np.float64) @ flat).astype(np.float32)
        return tf.reshape(tf.linalg.matmul(tf.constant(basis), tf.constant(coefficients)),
                          kernel.shape)

    @staticmethod
    def padding(size: int) -> list[list[int]]:
        return [[0, 0], [size // 2, (size - 1) // 2], [size // 2, (size - 1) // 2], [0, 0]]

    def analysis(self, y: tf.Tensor) -> tf.Tensor:
        """h_a: correlations with explicit zero padding, RDFT-parameterised kernels."""
        layers = self.model.hyperprior.analysis.layers
        for position, layer in enumerate(layers):
            kernel, bias = self.weights(layer)
            padding = "SAME" if "explicit_padding" in self.omit else self.padding(
                kernel.shape[0])
            y = tf.nn.conv2d(y, self.rdft_kernel(kernel), layer.strides[0], padding)
            y = tf.nn.bias_add(y, tf.constant(bias))
            if position < len(layers) - 1:
                y = tf.nn.relu(y)
        return y

    def synthesis(self, z_hat: tf.Tensor, network: tf.keras.Sequential,
                  y_shape: tf.Tensor) -> tf.Tensor:
        """h_s: kernels stored as SignalConv2D holds them (convolution kernels [k, k, in, out])
        and turned into what the ops take in the graph; cropped to y's size."""
        x = z_hat
        for layer in network.layers:
            kernel, bias = self.weights(layer)
            size = kernel.shape[0]
            if isinstance(layer, tf.keras.layers.Conv2DTranspose):
                stored = np.transpose(kernel, [0, 1, 3, 2])
                stored = self.rdft_kernel(stored) if self.rdft_synthesis else tf.constant(stored)
                shape = tf.shape(x)
                output_shape = tf.stack([shape[0], shape[1] * 2, shape[2] * 2, kernel.shape[2]])
                x = tf.nn.conv2d_transpose(x, tf.transpose(stored, [0, 1, 3, 2]), output_shape,
                                           2, self.padding(size))
            else:
                stored = kernel[::-1, ::-1]
                stored = self.rdft_kernel(stored) if self.rdft_synthesis else tf.constant(stored)
                x = tf.nn.conv2d(x, stored[::-1, ::-1], 1, self.padding(size))
            x = tf.nn.bias_add(x, tf.constant(bias))
            if layer.activation is tf.keras.activations.relu:
                x = tf.nn.relu(x)
        return x[:, :y_shape[0], :y_shape[1]]

    def encoder(self, x: tf.Tensor) -> tf.Tensor:
        layers = self.model.encoder.layers
        for position in range(0, len(layers) - 1, 3):
            x = self.keras_conv(x, layers[position])
            if not (position == 3 and "encoder_norm" in self.omit):
                x = self.norm(x, layers[position + 1])
            x = tf.nn.relu(x)
        return self.keras_conv(x, layers[-1])

    def generator(self, y_hat: tf.Tensor) -> tf.Tensor:
        generator = self.model.generator
        first_norm, head_conv, head_norm = generator.head.layers
        head = self.norm(self.keras_conv(self.norm(y_hat, first_norm), head_conv), head_norm)
        hidden = head
        blocks = generator.residual_blocks
        if "residual_block" in self.omit:
            blocks = blocks[:-1]
        for block in blocks:
            inner = tf.nn.relu(self.norm(self.keras_conv(hidden, block.conv_a), block.norm_a))
            hidden = hidden + self.norm(self.keras_conv(inner, block.conv_b), block.norm_b)
        x = head + hidden
        tail = generator.tail.layers
        for position in range(0, len(tail) - 1, 3):
            x = tf.nn.relu(self.norm(self.keras_conv(x, tail[position]), tail[position + 1]))
        return self.keras_conv(x, tail[-1])

    # Entropy coding.

    def z_tables(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        return z_coding(self.model)

    def y_tables(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Per scale of the table, the pmf of floor(N(0, s) + 0.5) over -c..c with
        c = ceil(s * quantile), the tail mass last, and the offsets -c."""
        multiplier = -_normal_quantile(Y_TAIL_MASS / 2)
        pmfs, offsets = [], []
        for scale in spec_scale_table(self.config):
            center = math.ceil(scale * multiplier)
            edges = np.arange(-center - 0.5, center + 1.5) / scale
            cdf = np.array([0.5 * math.erfc(-edge / math.sqrt(2)) for edge in edges])
            pmf = np.diff(cdf)
            pmfs.append(np.append(pmf, 2 * cdf[0]).astype(np.float32))
            offsets.append(-center)
        return pmfs, np.array(offsets, np.int32)

    @staticmethod
    def cdf_table(pmfs: list[np.ndarray]) -> tuple[tf.Tensor, tf.Tensor]:
        """PmfToQuantizedCdf of each pmf in a map_fn, zero-padded into one table, and each
        row's CDF length."""
        width = max(len(pmf) for pmf in pmfs)
        padded = np.stack([np.pad(pmf, (0, width - len(pmf))) for pmf in pmfs])
        lengths = np.array([len(pmf) for pmf in pmfs], np.int32)

        def row(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
            pmf, length = args
            cdf = gen_ops.pmf_to_quantized_cdf(pmf[:length], precision=PRECISION)
            return tf.pad(cdf, [[0, width - length]])

        table = tf.map_fn(row, (tf.constant(padded), tf.constant(lengths)), dtype=tf.int32,
                          back_prop=False)
        return table, tf.constant(lengths + 1)

    @staticmethod
    def coded(function, *args) -> tf.Tensor:
        return function(*args, precision=PRECISION, overflow_width=OVERFLOW_WIDTH)

    def scale_indexes(self, scale: tf.Tensor) -> tf.Tensor:
        """Lower-bounds the scales at the first entry; the index of the next greater one."""
        table = tf.constant(spec_scale_table(self.config), tf.float32)
        scale = tf.maximum(scale, table[0])
        if "next_greater_index" in self.omit:  # the nearest entry in log space instead:
            # how many geometric midpoints between neighbouring entries the scale exceeds.
            entries = np.array(spec_scale_table(self.config))
            midpoints = tf.constant(np.sqrt(entries[:-1] * entries[1:]), tf.float32)
            return tf.reduce_sum(tf.cast(scale[..., tf.newaxis] > midpoints, tf.int32), -1)
        initial = tf.fill(tf.shape(scale), tf.constant(len(spec_scale_table(self.config)) - 1))
        return tf.foldr(lambda index, entry: index - tf.cast(scale <= entry, tf.int32),
                        table[:-1], initializer=initial, back_prop=False)

    def build(self, control_flow: str) -> tf.compat.v1.MetaGraphDef:
        config = self.config
        z_pmfs, z_offsets, medians = self.z_tables()
        y_pmfs, y_offsets = self.y_tables()
        graph = tf.compat.v1.Graph()
        with graph.as_default(), _control_flow(control_flow):
            z_cdf, z_lengths = self.cdf_table(z_pmfs)
            y_cdf, y_lengths = self.cdf_table(y_pmfs)
            quantiles = np.zeros([len(medians), 1, 3], np.float32)
            quantiles[:, 0, 1] = medians
            median = tf.stop_gradient(tf.constant(quantiles)[:, 0, 1])

            def z_indexes(shape: tf.Tensor) -> tf.Tensor:
                return tf.broadcast_to(tf.range(config.hyper_channels), shape)

            def encode_z(z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                symbols = tf.cast(tf.floor(z + (0.5 - median)), tf.int32)
                strings = tf.map_fn(
                    lambda one: self.coded(gen_ops.unbounded_index_range_encode, one,
                                           z_indexes(tf.shape(one)), z_cdf, z_lengths,
                                           tf.constant(z_offsets)),
                    symbols, dtype=tf.string, back_prop=False)
                return strings, symbols

            def decode_z(strings: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
                full = tf.concat([shape, [config.hyper_channels]], axis=0)
                symbols = tf.map_fn(
                    lambda one: self.coded(gen_ops.unbounded_index_range_decode, one,
                                           z_indexes(full), z_cdf, z_lengths,
                                           tf.constant(z_offsets)),
                    strings, dtype=tf.int32, back_prop=False)
                return tf.cast(symbols, tf.float32) + median

            def mean_and_index(z_hat: tf.Tensor, y_shape: tf.Tensor
                               ) -> tuple[tf.Tensor, tf.Tensor]:
                hyperprior = self.model.hyperprior
                scale = self.synthesis(z_hat, hyperprior.synthesis_scale, y_shape)
                mean = self.synthesis(z_hat, hyperprior.synthesis_mean, y_shape)
                return mean, self.scale_indexes(scale)

            def code_y(function, values: tf.Tensor, index: tf.Tensor, dtype) -> tf.Tensor:
                return tf.map_fn(
                    lambda args: self.coded(function, args[0], args[1], y_cdf, y_lengths,
                                            tf.constant(y_offsets)),
                    (values, index), dtype=dtype, back_prop=False)

            # Sender.
            image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="input_image")
            image_shape = tf.shape(image)[1:3]
            pad = (PAD_MULTIPLE - image_shape % PAD_MULTIPLE) % PAD_MULTIPLE
            x = tf.pad(image, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]], mode="REFLECT")
            y = self.encoder(tf.cast(x, tf.float32) / 255.0)
            y_shape = tf.shape(y)[1:3]
            z = self.analysis(y)
            z_strings, z_symbols = encode_z(z)
            tf.identity(z_symbols, name=Z_SYMBOLS)
            z_shape = tf.shape(z)[1:3]
            mean, index = mean_and_index(decode_z(z_strings, z_shape), y_shape)
            y_symbols = tf.cast(tf.floor(y - mean + 0.5), tf.int32)
            tf.identity(y_symbols, name=Y_SYMBOLS)
            y_strings = code_y(gen_ops.unbounded_index_range_encode, y_symbols, index,
                               tf.string)
            sent = [y_strings, z_strings, image_shape, y_shape, z_shape]

            # Receiver.
            received = [tf.compat.v1.placeholder(tf.string, [1]),
                        tf.compat.v1.placeholder(tf.string, [1]),
                        *(tf.compat.v1.placeholder(tf.int32, [2]) for _ in range(3))]
            got_y, got_z, got_image_shape, got_y_shape, got_z_shape = received
            mean, index = mean_and_index(decode_z(got_z, got_z_shape), got_y_shape)
            y_hat = tf.cast(code_y(gen_ops.unbounded_index_range_decode, got_y, index,
                                   tf.int32), tf.float32) + mean
            output = self.generator(y_hat)[:, :got_image_shape[0], :got_image_shape[1]]
            output = tf.clip_by_value(output * 255.0, 0.0, 255.0)

            build = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
            info = tf.compat.v1.saved_model.utils.build_tensor_info
            meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
            meta_graph.signature_def["sender"].CopyFrom(build(
                inputs={"input_image": info(image)},
                outputs={f"channel:{n}": info(tensor) for n, tensor in enumerate(sent)}))
            meta_graph.signature_def["receiver"].CopyFrom(build(
                inputs={f"channel:{n}": info(tensor) for n, tensor in enumerate(received)},
                outputs={"output_image": info(output)}))
        return meta_graph


_builds = iter(range(1_000_000))


def _rename_functions(meta_graph: tf.compat.v1.MetaGraphDef) -> None:
    """Gives the graph's functions names of their own: building them registered the original
    names in this process, and TensorFlow refuses a second, different definition of a name
    when the graph is loaded (a fresh process loading the file would not need this)."""
    suffix = f"_stand_in_{next(_builds)}"
    library = meta_graph.graph_def.library
    renamed = {function.signature.name: function.signature.name + suffix
               for function in library.function}

    def rename(nodes) -> None:
        for node in nodes:
            for value in node.attr.values():
                if value.func.name in renamed:
                    value.func.name = renamed[value.func.name]

    rename(meta_graph.graph_def.node)
    for function in library.function:
        function.signature.name = renamed[function.signature.name]
        rename(function.node_def)


def z_coding(model: HiFiC) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """z's pmfs (overflow bin last), offsets and medians in the stand-in of `model`.

    The pmfs are those of the model's prior (read from its tensorflow-compression 2.x
    tables); each channel's median is its quantisation offset moved by a whole number of bins
    (-2..2), so that a median taken as 0 shows.
    """
    @tf.function(autograph=False)
    def tables() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        coder = tfc.ContinuousBatchedEntropyModel(model.hyperprior.z_prior, coding_rank=3,
                                                  compression=True, stateless=True)
        return coder.cdf, coder.cdf_offset, coder.quantization_offset

    cdf, cdf_offset, quantization_offset = (value.numpy() for value in tables())
    pmfs, position = [], 0
    for _ in range(len(cdf_offset)):
        precision = -int(cdf[position])
        end = position + 1 + int(np.argmax(cdf[position + 1:] == 2 ** precision))
        pmfs.append((np.diff(cdf[position + 1:end + 1]) / 2.0 ** precision).astype(np.float32))
        position = end + 1
    shifts = np.arange(len(cdf_offset)) % 5 - 2
    medians = (quantization_offset + shifts).astype(np.float32)
    return pmfs, (cdf_offset - shifts).astype(np.int32), medians


def _normal_quantile(probability: float) -> float:
    """The standard normal's quantile, by bisection on erfc (no SciPy needed)."""
    low, high = -40.0, 40.0
    for _ in range(200):
        middle = (low + high) / 2
        if 0.5 * math.erfc(-middle / math.sqrt(2)) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def build_stand_in(model: HiFiC, omit: set[str] | frozenset = frozenset(),
                   norm_pattern: str = "batch_normalization", control_flow: str = "v1",
                   rdft_synthesis: bool = False) -> tf.compat.v1.MetaGraphDef:
    """The published-model MetaGraphDef of `model`'s weights (see the module docstring);
    `omit` may hold "residual_block" (G loses its last block), "encoder_norm" (E's second
    ChannelNorm is left out), "explicit_padding" (h_a pads as Keras "same") and
    "next_greater_index" (scales index the nearest table entry in log space)."""
    if norm_pattern not in NORM_PATTERNS:
        raise ValueError(f"norm_pattern must be one of {NORM_PATTERNS}")
    meta_graph = _Builder(model, set(omit), norm_pattern, rdft_synthesis).build(control_flow)
    _rename_functions(meta_graph)
    return meta_graph


def spec_scale_table(config: ModelConfig) -> list[float]:
    """The spec's scale table: num_scales scales evenly spaced in log from min to max."""
    return np.geomspace(config.scale_min, config.scale_max, config.num_scales).tolist()


def randomise(model: HiFiC, seed: int = 0) -> HiFiC:
    """Gives every ChannelNorm a non-trivial gamma and beta and moves z's prior away from its
    (deterministic) initial value, so that a mis-imported norm or coding table shows in the
    output; returns the model."""
    from hific_tf.nn.layers import ChannelNorm

    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, ChannelNorm):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.beta.assign(rng.uniform(-0.2, 0.2, layer.beta.shape))
    for variable in model.hyperprior.z_prior.trainable_variables:
        variable.assign_add(rng.normal(0.0, 0.5, variable.shape))
    return model
