"""The hyperprior P: h_a, the two h_s nets, and tensorflow-compression's entropy models.

z = h_a(y) is coded with a factorized prior; y is coded with a mean-scale Gaussian
conditional whose means and scales come from two separate h_s nets applied to z_hat.
h_a and h_s pad as the authors' tensorflow-compression 1.x layers do (explicit zero padding
(k//2, (k-1)//2), see hific_tf.layers.zero_padding), so z is ceil(y / 4) on each side and
h_s's outputs, 4 * ceil(y / 4), are cropped to y's size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_compression as tfc

from hific_tf.configs import ModelConfig
from hific_tf.layers import ZeroPaddedConv2D, ZeroPaddedConv2DTranspose

# tensorflow-compression's default precision of the range coder's CDFs, in bits.
RANGE_CODER_PRECISION = 12


# z is y downsampled twice by stride-2 convolutions with explicit padding: ceil(y / 4).
Z_STRIDE = 4


def z_shape(y_shape: tf.Tensor) -> tf.Tensor:
    """z's [height, width] for y's [height, width]."""
    return (y_shape + Z_STRIDE - 1) // Z_STRIDE


class TrainingOutputs(NamedTuple):
    """What a training-mode pass through the hyperprior returns."""

    y_hat: tf.Tensor  # round(y - mu) + mu with identity gradient, for G and D
    y_bits: tf.Tensor  # per-image bits of y under uniform noise, shape [batch]
    z_bits: tf.Tensor  # per-image bits of z under uniform noise, shape [batch]
    quantized_bits: tf.Tensor  # per-image bits of y and z rounded, no gradient, [batch]


class Coded(NamedTuple):
    """The result of coding one latent: strings and the decoder-side quantised values."""

    z_strings: tf.Tensor
    y_strings: tf.Tensor
    z_hat: tf.Tensor
    y_hat: tf.Tensor


class ZTables(NamedTuple):
    """z's range-coding tables in tensorflow-compression 2.x layout.

    `cdf` concatenates, per channel, minus the precision followed by that channel's quantised CDF
    (overflow bin included); `cdf_offset` is each channel's smallest coded value, and z is
    quantised as round(z - quantization_offset) + quantization_offset.
    """

    cdf: tf.Tensor
    cdf_offset: tf.Tensor
    quantization_offset: tf.Tensor
    precision: int = RANGE_CODER_PRECISION


class Hyperprior(tf.keras.layers.Layer):
    """Side information and entropy models for the latent y."""

    def __init__(self, config: ModelConfig, name: str = "hyperprior") -> None:
        super().__init__(name=name)
        width = config.hyper_channels
        self.analysis = tf.keras.Sequential(
            [ZeroPaddedConv2D(width, 3, activation="relu"),
             ZeroPaddedConv2D(width, 5, strides=2, activation="relu"),
             ZeroPaddedConv2D(width, 5, strides=2)], name="h_a")

        def synthesis(name: str) -> tf.keras.Sequential:
            return tf.keras.Sequential(
                [ZeroPaddedConv2DTranspose(width, 5, activation="relu"),
                 ZeroPaddedConv2DTranspose(width, 5, activation="relu"),
                 ZeroPaddedConv2D(config.latent_channels, 3)], name=name)

        self.synthesis_mean = synthesis("h_s_mean")
        self.synthesis_scale = synthesis("h_s_scale")
        self.z_prior = tfc.NoisyDeepFactorized(
            batch_shape=[width], num_filters=(3, 3, 3), init_scale=10.0)
        self._log_scale_min = math.log(config.scale_min)
        self._log_scale_step = (
            (math.log(config.scale_max) - self._log_scale_min) / max(config.num_scales - 1, 1))
        self._num_scales = config.num_scales
        self.z_model = self._z_model(compression=False)
        # Rounds z without the median offset, whose search would cost every training step;
        # used only for the rate control's quantised estimate.
        self._z_rounding_model = tfc.ContinuousBatchedEntropyModel(
            self.z_prior, coding_rank=3, compression=False, offset_heuristic=False)
        self.y_model = self._y_model(compression=False)
        self.z_coder: tfc.ContinuousBatchedEntropyModel | None = None
        self.y_coder: tfc.LocationScaleIndexedEntropyModel | None = None

    def _z_model(self, compression: bool) -> tfc.ContinuousBatchedEntropyModel:
        return tfc.ContinuousBatchedEntropyModel(
            self.z_prior, coding_rank=3, compression=compression)

    def _y_model(self, compression: bool) -> tfc.LocationScaleIndexedEntropyModel:
        return tfc.LocationScaleIndexedEntropyModel(
            tfc.NoisyNormal, self._num_scales, self._scale_from_index, coding_rank=3,
            compression=compression)

    def _scale_from_index(self, index: tf.Tensor) -> tf.Tensor:
        return tf.exp(self._log_scale_min + self._log_scale_step * index)

    def _scale_index(self, scale: tf.Tensor) -> tf.Tensor:
        """Fractional position of `scale` in the scale table (clipped by the entropy model)."""
        log_scale = tf.math.log(tf.maximum(scale, math.exp(self._log_scale_min)))
        return (log_scale - self._log_scale_min) / self._log_scale_step

    def _mean_and_index(self, z_hat: tf.Tensor, y_shape: tf.Tensor
                        ) -> tuple[tf.Tensor, tf.Tensor]:
        """y's means and fractional scale indexes from z_hat, cropped to y's [height, width]
        `y_shape` (h_s yields 4 * z's size)."""
        def crop(tensor: tf.Tensor) -> tf.Tensor:
            return tensor[:, :y_shape[0], :y_shape[1]]

        return (crop(self.synthesis_mean(z_hat)),
                self._scale_index(crop(self.synthesis_scale(z_hat))))

    def call(self, y: tf.Tensor, training: bool = True) -> TrainingOutputs:
        """Training-mode pass: noisy rates of y and z and the straight-through y_hat."""
        z = self.analysis(y)
        z_tilde, z_bits = self.z_model(z, training=training)
        mean, index = self._mean_and_index(z_tilde, tf.shape(y)[1:3])
        _, y_bits = self.y_model(y, index, loc=mean, training=training)
        y_hat = tfc.round_st(y - mean) + mean
        if training:
            # The rate control compares the quantised estimate with the target.
            y_stopped = tf.stop_gradient(y)
            _, z_bits_rounded = self._z_rounding_model(tf.stop_gradient(z), training=False)
            _, y_bits_rounded = self.y_model(y_stopped, tf.stop_gradient(index),
                                             loc=tf.stop_gradient(mean), training=False)
            quantized_bits = tf.stop_gradient(z_bits_rounded + y_bits_rounded)
        else:
            quantized_bits = y_bits + z_bits
        return TrainingOutputs(y_hat=y_hat, y_bits=y_bits, z_bits=z_bits,
                               quantized_bits=quantized_bits)

    @property
    def prepared(self) -> bool:
        return self.z_coder is not None

    def prepare_for_coding(self, z_tables: ZTables | None = None) -> None:
        """Freezes the range-coding tables from the current weights (once per model).

        The tables are variables, so that a SavedModel carries exactly the tables its
        encoder used and decoding never depends on recomputing them. `z_tables` replaces
        z's tables computed from the prior with given ones (those of an imported graph).
        """
        if self.prepared:
            raise RuntimeError(
                "coding tables are already fixed for this model; build a new model to code "
                "with changed weights")
        if z_tables is None:
            z_tables = ZTables(*self._z_tables())
        self.z_coder = tfc.ContinuousBatchedEntropyModel(
            prior_shape=self.z_prior.batch_shape, coding_rank=3, compression=True,
            cdf=z_tables.cdf, cdf_offset=z_tables.cdf_offset,
            quantization_offset=z_tables.quantization_offset,
            range_coder_precision=z_tables.precision)
        self.y_coder = self._y_model(compression=True)

    @tf.function(autograph=False)
    def _z_tables(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The factorized prior's range-coding tables, computed as one graph.

        Eagerly, tensorflow-compression's tail search runs op by op and takes seconds.
        """
        model = tfc.ContinuousBatchedEntropyModel(
            self.z_prior, coding_rank=3, compression=True, stateless=True)
        return model.cdf, model.cdf_offset, model.quantization_offset

    def _check_prepared(self) -> None:
        if not self.prepared:
            raise RuntimeError("call prepare_for_coding() after loading weights, before coding")

    def compress(self, y: tf.Tensor) -> Coded:
        """Codes a batch of latents; returns strings and the quantised latents."""
        self._check_prepared()
        z = self.analysis(y)
        z_strings = self.z_coder.compress(z)
        z_hat = self.z_coder.decompress(z_strings, tf.shape(z)[1:3])
        mean, index = self._mean_and_index(z_hat, tf.shape(y)[1:3])
        index = tf.round(index)
        y_strings = self.y_coder.compress(y, index, loc=mean)
        y_hat = tf.round(y - mean) + mean
        return Coded(z_strings=z_strings, y_strings=y_strings, z_hat=z_hat, y_hat=y_hat)

    def decompress(self, z_strings: tf.Tensor, y_strings: tf.Tensor,
                   y_shape: tf.Tensor) -> tf.Tensor:
        """Recovers y_hat from the strings; `y_shape` is y's [height, width] (int32)."""
        self._check_prepared()
        z_hat = self.z_coder.decompress(z_strings, z_shape(y_shape))
        mean, index = self._mean_and_index(z_hat, y_shape)
        return self.y_coder.decompress(y_strings, tf.round(index), loc=mean)

    def information_content(self, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Bits of y_hat and z_hat per image under the coding distributions (−log2 p).

        A tight lower bound on what the range coder writes, to measure coding overhead.
        """
        self._check_prepared()
        z = self.analysis(y)
        # The coder keeps only tables; the training model holds the prior itself and
        # quantises with the same heuristic offset.
        z_hat, z_bits = self.z_model(z, training=False)
        mean, index = self._mean_and_index(z_hat, tf.shape(y)[1:3])
        _, y_bits = self.y_coder(y, tf.round(index), loc=mean, training=False)
        return y_bits, z_bits
