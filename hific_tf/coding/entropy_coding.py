"""Range coding with stored tables, and an exact integer h_s: files that decode on any machine.

Two things decide whether a file decodes: the range coder's CDF tables, and the table index
of every element of y, which the decoder derives from z_hat through h_s. Both are made
independent of the machine:

- The tables (z's CDFs, offsets and quantisation offsets; y's CDFs per scale; the index
  thresholds) are computed once, when a model is bundled, converted or exported, and stored
  with it as arrays (`CodingTables`); loading never recomputes them.
- With `ModelConfig.hyper_synthesis == "integer"` (the default), h_s runs on integers: each
  layer's weights are rounded to integers per output channel (at most `WEIGHT_LEVELS`), its
  activations to fixed point (`ACTIVATION_FRACTION_BITS`), and the convolutions run in float64
  on integer values below 2^53, so every sum is exact whatever the order of summation (oneDNN
  or Eigen, one thread or many). Everything else is elementwise IEEE arithmetic, which is
  correctly rounded everywhere. The scale index compares the last layer's exact integer
  accumulator with stored half-integer thresholds, so no rounding decides it. This follows
  Ballé, Johnston and Minnen, "Integer networks for data compression with latent-variable
  models" (ICLR 2019), applied after training.
- `"float"` runs h_s in float32 as trained, as the authors' code does; it is kept for models
  imported from the authors' graphs, whose files must match theirs.

The index rule is the authors' in both modes: a scale's index is that of the next greater
entry of the scale table (the number of entries below it, the last entry excluded).
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.ops import gen_ops

from hific_tf.nn.layers import (
    ZeroPaddedConv2D,
    ZeroPaddedConv2DTranspose,
    explicit_padding,
    upsampled_shape,
)

# The authors' range-coder precision (tensorflow-compression 1.3, precision 16).
RANGE_CODER_PRECISION = 16
# Integer h_s: weights per output channel in [-WEIGHT_LEVELS, WEIGHT_LEVELS] and activations in
# units of 2^-ACTIVATION_FRACTION_BITS. A 5x5x320 layer then sums 8 000 products below
# 2^14 * 2^22 each for activations up to 1 000, well inside float64's exact range of 2^53;
# the encoder checks the bound on every image (`IntegerSynthesis.exact`).
WEIGHT_LEVELS = 2 ** 14 - 1
ACTIVATION_FRACTION_BITS = 12
EXACT_LIMIT = 2.0 ** 53
_ACTIVATION_UNIT = 2.0 ** -ACTIVATION_FRACTION_BITS


class ZTables(NamedTuple):
    """z's range-coding tables in tensorflow-compression 2.x layout.

    `cdf` concatenates, per channel, minus the precision followed by that channel's quantised
    CDF (overflow bin included); `cdf_offset` is each channel's smallest coded symbol; z is
    quantised around the prior's medians as round(z - offset) + offset.
    """

    cdf: np.ndarray  # int32 [total]
    cdf_offset: np.ndarray  # int32 [C_z]
    quantization_offset: np.ndarray  # float32 [C_z], the medians' fractional parts


class CodingTables(NamedTuple):
    """Everything the range coder and the index rule use, as stored arrays."""

    z: ZTables
    y_cdf: np.ndarray  # int32 [total], one row per scale table entry
    y_cdf_offset: np.ndarray  # int32 [num_scales]
    scale_table: np.ndarray  # float32 [num_scales]
    # float64 [C_y, num_scales - 1]: an element's index is the number of its channel's
    # thresholds that its scale value lies above (integer accumulators in integer mode).
    scale_thresholds: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The tables as named arrays, for an .npz file."""
        return {"z_cdf": self.z.cdf, "z_cdf_offset": self.z.cdf_offset,
                "z_offset": self.z.quantization_offset, "y_cdf": self.y_cdf,
                "y_cdf_offset": self.y_cdf_offset, "scale_table": self.scale_table,
                "scale_thresholds": self.scale_thresholds}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> CodingTables:
        """Inverse of `arrays`, checking dtypes and ranks; KeyError/ValueError if damaged."""
        def get(key: str, dtype: type, rank: int) -> np.ndarray:
            value = np.asarray(arrays[key])
            if value.dtype != dtype or value.ndim != rank:
                raise ValueError(f"coding table {key} has dtype {value.dtype} and rank "
                                 f"{value.ndim}, expected {np.dtype(dtype)} and {rank}")
            return value

        return cls(z=ZTables(get("z_cdf", np.int32, 1), get("z_cdf_offset", np.int32, 1),
                             get("z_offset", np.float32, 1)),
                   y_cdf=get("y_cdf", np.int32, 1),
                   y_cdf_offset=get("y_cdf_offset", np.int32, 1),
                   scale_table=get("scale_table", np.float32, 1),
                   scale_thresholds=get("scale_thresholds", np.float64, 2))

    def update_digest(self, digest: hashlib._Hash) -> None:
        """Feeds every table's dtype, shape and bytes to `digest` in a fixed order."""
        for key, value in self.arrays().items():
            value = np.ascontiguousarray(value)
            digest.update(f"{key}{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes())


def quantize_weights(kernel: np.ndarray, bias: np.ndarray,
                     output_axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A layer's float weights as integers: (kernel_int, bias_int, step per output channel).

    kernel ≈ kernel_int * step and bias ≈ bias_int * step * 2^-ACTIVATION_FRACTION_BITS, so that
    the bias adds to the integer accumulator of fixed-point inputs. Only exact operations
    (maximum, one division, rounding), so every machine derives the same integers.
    """
    kernel = np.asarray(kernel, np.float64)
    reduce_axes = tuple(a for a in range(kernel.ndim) if a != output_axis)
    largest = np.max(np.abs(kernel), axis=reduce_axes)
    step = np.where(largest > 0, largest / WEIGHT_LEVELS, 1.0)
    shape = [1] * kernel.ndim
    shape[output_axis] = -1
    kernel_int = np.round(kernel / step.reshape(shape))
    bias_int = np.round(np.asarray(bias, np.float64) / (step * _ACTIVATION_UNIT))
    return kernel_int, bias_int, step


def _output_axis(layer: tf.keras.layers.Layer) -> int:
    # Keras stores Conv2D kernels as [k, k, in, out] and Conv2DTranspose as [k, k, out, in].
    return 2 if isinstance(layer, tf.keras.layers.Conv2DTranspose) else 3


def _relu(layer: tf.keras.layers.Layer) -> bool:
    activation = tf.keras.activations.serialize(layer.activation)
    if activation not in ("relu", "linear"):
        raise ValueError(f"integer h_s supports relu and linear layers, not {activation}")
    return activation == "relu"


class _Geometry(NamedTuple):
    """What a layer's convolution does, apart from its weights."""

    transposed: bool
    strides: tuple[int, int]
    padding: str | list[list[int]]


def _geometry(layer: tf.keras.layers.Layer) -> _Geometry:
    if isinstance(layer, ZeroPaddedConv2D | ZeroPaddedConv2DTranspose):
        return _Geometry(isinstance(layer, ZeroPaddedConv2DTranspose), tuple(layer.strides),
                         explicit_padding(layer.kernel_size))
    supported = (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose)
    if type(layer) not in supported or layer.padding != "same":
        raise ValueError(f"integer h_s does not support the layer {layer.name} "
                         f"({type(layer).__name__}, padding {layer.padding})")
    return _Geometry(type(layer) is tf.keras.layers.Conv2DTranspose, tuple(layer.strides),
                     "SAME")


def _linear(geometry: _Geometry, inputs: tf.Tensor, kernel: tf.Variable) -> tf.Tensor:
    """A layer's convolution, without bias or activation, applied with `kernel`."""
    if not geometry.transposed:
        return tf.nn.conv2d(inputs, kernel, geometry.strides, geometry.padding)
    return tf.nn.conv2d_transpose(
        inputs, kernel, upsampled_shape(inputs, geometry.strides, tf.shape(kernel)[2]),
        geometry.strides, geometry.padding)


class IntegerSynthesis(tf.Module):
    """An h_s network (a Keras Sequential of convolutions) evaluated exactly on integers.

    Each layer's kernel is rounded to integers and held as a float64 variable; `accumulate`
    returns the last layer's exact integer accumulator (bias included) and `step`, the factor
    that turns it into the float network's output.
    """

    def __init__(self, network: tf.keras.Sequential, name: str) -> None:
        super().__init__(name=name)
        self._geometries = [_geometry(layer) for layer in network.layers]
        self._kernels = []
        self._biases = []
        self._steps = []
        self._relus = []
        # Per layer, the largest input magnitude for which every partial sum stays exact.
        self._input_limits = []
        for layer in network.layers:
            kernel, bias = (w.numpy() for w in layer.weights)
            output_axis = _output_axis(layer)
            kernel_int, bias_int, step = quantize_weights(kernel, bias, output_axis)
            self._kernels.append(tf.Variable(kernel_int, trainable=False, dtype=tf.float64,
                                             name=f"{layer.name}_kernel"))
            self._biases.append(tf.constant(bias_int, tf.float64))
            self._steps.append(tf.constant(step, tf.float64))
            self._relus.append(_relu(layer))
            reduce_axes = tuple(a for a in range(4) if a != output_axis)
            largest_sum = float(np.max(np.sum(np.abs(kernel_int), axis=reduce_axes)))
            largest_bias = float(np.max(np.abs(bias_int)))
            self._input_limits.append(
                tf.constant((EXACT_LIMIT - largest_bias) / max(largest_sum, 1.0), tf.float64))
        self.step = self._steps[-1]
        self._kernel_sizes = [layer.kernel_size[0] for layer in network.layers]
        # Runs over row ranges with explicit padding, ordinary convolutions of stride 1 and
        # transposed ones of any stride, so every row's phase is the same in any range.
        self.rows_tileable = all(
            geometry.padding != "SAME" and (geometry.transposed or geometry.strides[0] == 1)
            for geometry in self._geometries)
        if self.rows_tileable:
            self.upsampling = math.prod(geometry.strides[0] for geometry in self._geometries)
            low, high = self._reach(0, self.upsampling - 1)[0]
            # Rows of the input beyond a row's own that its outputs read.
            self.halo = (-low, high)

    def _reach(self, low: tf.Tensor, high: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """For output rows low...high (inclusive): the rows of each layer's input that they
        read, first layer first, then low...high themselves."""
        reach = [(low, high)]
        for geometry, size in zip(reversed(self._geometries), reversed(self._kernel_sizes),
                                  strict=True):
            stride, before = geometry.strides[0], geometry.padding[1][0]
            if geometry.transposed:  # Output o sums inputs i with s*i - before + t = o.
                low, high = -((size - 1 - before - low) // stride), (high + before) // stride
            else:
                low, high = low - before, high - before + size - 1
            reach.append((low, high))
        return reach[::-1]

    def accumulate(self, inputs: tf.Tensor, top: tf.Tensor | None = None,
                   bottom: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """The last layer's integer accumulator (float64 holding integers) for float inputs,
        and whether every layer's sums were exact (inputs within the layer's limit).

        Given top and bottom (`rows_tileable` networks), only output rows top...bottom - 1:
        each layer runs on the rows of its input that those read and keeps the rows the
        next layers read, so that every value computed, and checked, is the whole
        network's (integer sums are exact in any order).
        """
        values = tf.round(tf.cast(inputs, tf.float64) / _ACTIVATION_UNIT)
        if top is not None:
            reach = self._reach(top, bottom - 1)
            length = tf.shape(values)[1]
            start = tf.maximum(reach[0][0], 0)
            values = values[:, start:tf.minimum(reach[0][1] + 1, length)]
        exact = []
        for index, (geometry, kernel, bias, step, relu, limit) in enumerate(zip(
                self._geometries, self._kernels, self._biases, self._steps, self._relus,
                self._input_limits, strict=True)):
            exact.append(tf.reduce_max(tf.abs(values)) <= limit)
            accumulator = _linear(geometry, values, kernel) + bias
            if top is not None:
                if geometry.transposed:
                    origin, length = start * geometry.strides[0], length * geometry.strides[0]
                else:
                    origin = start
                low, high = reach[index + 1]
                start = tf.maximum(low, 0)
                accumulator = accumulator[:, start - origin:tf.minimum(high + 1, length) - origin]
            if index == len(self._kernels) - 1:
                return accumulator, tf.reduce_all(exact)
            if relu:
                accumulator = tf.maximum(accumulator, 0.0)
            values = tf.round(accumulator * step)
        raise AssertionError("unreachable")

    def outputs(self, accumulator: tf.Tensor) -> tf.Tensor:
        """The float32 network output an accumulator stands for."""
        return tf.cast(accumulator * self.step * _ACTIVATION_UNIT, tf.float32)


def scale_thresholds(scale_table: np.ndarray, channels: int,
                     integer_step: np.ndarray | None) -> np.ndarray:
    """The index rule as thresholds: [channels, num_scales - 1] float64.

    Float mode: the table entries but the last (a scale above k of them gets index k).
    Integer mode: the same comparisons moved onto each channel's integer accumulator, at
    half-integers, so that an exact integer never ties with a threshold.
    """
    entries = np.asarray(scale_table[:-1], np.float64)
    if integer_step is None:
        return np.tile(entries, (channels, 1))
    units = np.asarray(integer_step, np.float64)[:, np.newaxis] * _ACTIVATION_UNIT
    return np.floor(entries[np.newaxis, :] / units) + 0.5


def table_index(values: tf.Tensor, thresholds: tf.Tensor) -> tf.Tensor:
    """int32 index per element of [..., C] `values`: how many of its channel's thresholds
    (a [C, K] tensor, each row ascending) lie strictly below it."""
    shape = tf.shape(values)
    per_channel = tf.transpose(tf.reshape(tf.cast(values, tf.float64), [-1, shape[-1]]))
    index = tf.searchsorted(thresholds, per_channel, side="left", out_type=tf.int32)
    return tf.reshape(tf.transpose(index), shape)


@tf.function(autograph=False)
def _prior_tables(z_prior: tfc.NoisyDeepFactorized, num_scales: int,
                  scale_fn) -> tuple[tf.Tensor, ...]:
    # One graph: eagerly, tensorflow-compression's tail search runs op by op for seconds.
    z_model = tfc.ContinuousBatchedEntropyModel(
        z_prior, coding_rank=3, compression=True, stateless=True,
        range_coder_precision=RANGE_CODER_PRECISION)
    y_model = tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, num_scales, scale_fn, coding_rank=3, compression=True,
        stateless=True, range_coder_precision=RANGE_CODER_PRECISION)
    scale_table = scale_fn(tf.range(num_scales, dtype=tf.float32))
    return (z_model.cdf, z_model.cdf_offset, z_model.quantization_offset, y_model.cdf,
            y_model.cdf_offset, scale_table)


def build_tables(z_prior: tfc.NoisyDeepFactorized, num_scales: int, scale_fn,
                 latent_channels: int, integer_step: np.ndarray | None,
                 z_tables: ZTables | None = None) -> CodingTables:
    """Computes the coding tables once, from the priors (and z's tables if given)."""
    z_cdf, z_cdf_offset, z_offset, y_cdf, y_cdf_offset, table = (
        value.numpy() for value in _prior_tables(z_prior, num_scales, scale_fn))
    if z_tables is None:
        z_tables = ZTables(z_cdf, z_cdf_offset, z_offset)
    z_tables = ZTables(np.asarray(z_tables.cdf, np.int32),
                       np.asarray(z_tables.cdf_offset, np.int32),
                       np.asarray(z_tables.quantization_offset, np.float32))
    return CodingTables(
        z=z_tables, y_cdf=y_cdf.astype(np.int32), y_cdf_offset=y_cdf_offset.astype(np.int32),
        scale_table=table.astype(np.float32),
        scale_thresholds=scale_thresholds(table, latent_channels, integer_step))


# Bits a range coder's output may fall short of the information content it codes (its
# final flush); generous, so that no real file comes near the bound below.
_CODER_SLACK_BITS = 64


def least_bits_per_position(cdf: np.ndarray) -> float:
    """The fewest bits one z position (all channels) can cost under the quantised CDFs: the sum
    over channels of −log2 of each channel's most probable symbol, from the stored table."""
    bits = 0.0
    markers = np.flatnonzero(cdf < 0)
    for marker, end in zip(markers, [*markers[1:], len(cdf)], strict=True):
        precision = -int(cdf[marker])
        largest = int(np.max(np.diff(cdf[marker + 1:end])))
        bits += precision - float(np.log2(largest))
    return bits


class Coder(tf.Module):
    """The range coder over stored tables: z per channel, y per table index."""

    def __init__(self, tables: CodingTables, name: str = "coder") -> None:
        super().__init__(name=name)
        # Variables, so that a SavedModel carries exactly these tables.
        def variable(value: np.ndarray, key: str) -> tf.Variable:
            return tf.Variable(value, trainable=False, name=key)

        self.z_cdf = variable(tables.z.cdf, "z_cdf")
        self.z_cdf_offset = variable(tables.z.cdf_offset, "z_cdf_offset")
        self.z_offset = variable(tables.z.quantization_offset, "z_offset")
        self.y_cdf = variable(tables.y_cdf, "y_cdf")
        self.y_cdf_offset = variable(tables.y_cdf_offset, "y_cdf_offset")
        self.scale_thresholds = variable(tables.scale_thresholds, "scale_thresholds")
        # 1 % below the exact figure, so the bound's own rounding never matters.
        self._z_position_bits = 0.99 * least_bits_per_position(tables.z.cdf)

    def z_string_fits(self, length: tf.Tensor, shape: tf.Tensor) -> tf.Tensor:
        """Whether a z string of `length` bytes can code a z of [H, W] `shape` at all.

        A range coder spends at least the information content of what it codes, so a file
        whose z string is far too short for its declared size is damaged or crafted: refusing
        it bounds the work a decoder does per byte of file.
        """
        positions = tf.cast(tf.reduce_prod(shape), tf.float64)
        available = 8.0 * tf.cast(length, tf.float64) + _CODER_SLACK_BITS
        return positions * self._z_position_bits <= available

    def encode_z(self, z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """[B, H, W, C] z → (one string per image, z_hat quantised around the medians)."""
        symbols = tf.cast(tf.round(z - self.z_offset), tf.int32)
        handle = gen_ops.create_range_encoder(tf.shape(z)[:1], self.z_cdf)
        handle = gen_ops.entropy_encode_channel(handle, symbols - self.z_cdf_offset)
        return (gen_ops.entropy_encode_finalize(handle),
                tf.cast(symbols, tf.float32) + self.z_offset)

    def decode_z(self, strings: tf.Tensor, shape: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Strings and z's [H, W] → (z_hat [B, H, W, C], the decoder's sanity flags)."""
        channels = tf.shape(self.z_cdf_offset)
        handle = gen_ops.create_range_decoder(strings, self.z_cdf)
        handle, symbols = gen_ops.entropy_decode_channel(
            handle, tf.concat([shape, channels], 0), tf.int32)
        sane = gen_ops.entropy_decode_finalize(handle)
        return tf.cast(symbols + self.z_cdf_offset, tf.float32) + self.z_offset, sane

    def y_encoder(self, batch_shape: tf.Tensor) -> tf.Tensor:
        """A range encoder for y, one string per image of a [B] `batch_shape`; `encode_y`
        appends to it and `finish_y` returns the strings."""
        return gen_ops.create_range_encoder(batch_shape, self.y_cdf)

    def encode_y(self, handle: tf.Tensor, y: tf.Tensor, mean: tf.Tensor,
                 index: tf.Tensor) -> tf.Tensor:
        """Appends round(y - mean), coded with the distribution of each element's table
        index, to the encoder `handle`; returns the new handle.

        The coder appends each image's elements in row-major order, so coding a latent in
        strips of whole rows, top to bottom, writes the same string as coding it at once.
        """
        symbols = tf.cast(tf.round(y - mean), tf.int32) - tf.gather(self.y_cdf_offset, index)
        return gen_ops.entropy_encode_index(handle, index, symbols)

    @staticmethod
    def finish_y(handle: tf.Tensor) -> tf.Tensor:
        """The strings an encoder from `y_encoder` has written."""
        return gen_ops.entropy_encode_finalize(handle)

    def y_decoder(self, strings: tf.Tensor) -> tf.Tensor:
        """A range decoder reading y from `strings` (one per image), for `decode_y`."""
        return gen_ops.create_range_decoder(strings, self.y_cdf)

    def decode_y(self, handle: tf.Tensor, mean: tf.Tensor,
                 index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Inverse of `encode_y`: reads the elements of `index`'s shape (in the order
        `encode_y` wrote them) and returns the new handle and y_hat = symbols + mean."""
        handle, symbols = gen_ops.entropy_decode_index(
            handle, index, tf.shape(index)[1:], tf.int32)
        symbols += tf.gather(self.y_cdf_offset, index)
        return handle, tf.cast(symbols, tf.float32) + mean

    @staticmethod
    def finish_decoding_y(handle: tf.Tensor) -> tf.Tensor:
        """The decoder's sanity flags once every element has been read."""
        return gen_ops.entropy_decode_finalize(handle)
