"""The hyperprior P: h_a, the two h_s nets, and tensorflow-compression's entropy models.

z = h_a(y) is coded with a factorized prior; y is coded with a mean-scale Gaussian
conditional whose means and scales come from two separate h_s nets applied to z_hat.
h_a and h_s pad as the authors' tensorflow-compression 1.x layers do (explicit zero padding
(k//2, (k-1)//2), see hific_tf.nn.layers.zero_padding), so z is ceil(y / 4) on each side and
h_s's outputs, 4 * ceil(y / 4), are cropped to y's size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf
import tensorflow_compression as tfc

from hific_tf.coding import bitstream, tiling
from hific_tf.coding.entropy_coding import (
    Coder,
    CodingTables,
    IntegerSynthesis,
    ZTables,
    build_tables,
    table_index,
)
from hific_tf.configs import ModelConfig
from hific_tf.nn.layers import Chain, ZeroPaddedConv2D, ZeroPaddedConv2DTranspose

# z is y downsampled twice by stride-2 convolutions with explicit padding: ceil(y / 4).
Z_STRIDE = 4


def z_shape(y_shape: tf.Tensor) -> tf.Tensor:
    """z's [height, width] for y's [height, width]."""
    return (y_shape + Z_STRIDE - 1) // Z_STRIDE


def crop(tensor: tf.Tensor, y_shape: tf.Tensor) -> tf.Tensor:
    """h_s's output cropped to y's [height, width]."""
    return tensor[:, :y_shape[0], :y_shape[1]]


# The authors' bound on every likelihood of the training rates (tensorflow-compression 1.x's
# likelihood_bound); below it, a likelihood's gradient passes only towards larger values.
LIKELIHOOD_FLOOR = 1e-9
_MEDIAN_BRACKET_DOUBLINGS = 24  # brackets medians up to 2**24 from 0
_MEDIAN_BISECTIONS = 48  # then halves the bracket to float32 resolution


class FlooredLikelihood:
    """An entropy model whose likelihoods are bounded below at LIKELIHOOD_FLOOR, as the
    authors' rates are.

    The bound applies to the likelihood itself, not its log: below the floor the rate's
    gradient is that of log(LIKELIHOOD_FLOOR + the likelihood's change), which a bound in
    log space would scale by LIKELIHOOD_FLOOR / likelihood.
    """

    def _log_prob(self, prior, bottleneck_perturbed: tf.Tensor) -> tf.Tensor:
        likelihood = tf.exp(super()._log_prob(prior, bottleneck_perturbed))
        return tf.math.log(tfc.lower_bound(likelihood, LIKELIHOOD_FLOOR))


class FlooredBatchedModel(FlooredLikelihood, tfc.ContinuousBatchedEntropyModel):
    """z's training entropy model, with the likelihood floor."""

    def quantized_bits(self, values: tf.Tensor) -> tf.Tensor:
        """Per-image bits of `values`, already quantised as the caller chose."""
        log_probs = self._log_prob(self.prior, values)
        return tf.reduce_sum(log_probs, axis=[1, 2, 3]) / -math.log(2.0)


class FlooredIndexedModel(FlooredLikelihood, tfc.LocationScaleIndexedEntropyModel):
    """y's training entropy model, with the likelihood floor."""


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


def _check_sane(sane: tf.Tensor) -> tf.Operation:
    return bitstream.check(tf.reduce_all(sane), "the file is corrupt: its coded data does not "
                           "decode (the checksum matches, so it was altered before the "
                           "checksum was written)")


def check_prepared(prepared: bool) -> None:
    """Refuses to code before `prepare_for_coding()` has fixed the coding tables.

    Raises:
        RuntimeError: `prepared` is false.
    """
    if not prepared:
        raise RuntimeError("call prepare_for_coding() after loading weights, before coding")


class Hyperprior(tf.keras.layers.Layer):
    """Side information and entropy models for the latent y."""

    def __init__(self, config: ModelConfig, name: str = "hyperprior") -> None:
        super().__init__(name=name)
        width = config.hyper_channels
        self.analysis = Chain(
            [ZeroPaddedConv2D(width, 3, activation="relu"),
             ZeroPaddedConv2D(width, 5, strides=2, activation="relu"),
             ZeroPaddedConv2D(width, 5, strides=2)], name="h_a")

        def synthesis(name: str) -> tf.keras.Sequential:
            return Chain(
                [ZeroPaddedConv2DTranspose(width, 5, activation="relu"),
                 ZeroPaddedConv2DTranspose(width, 5, activation="relu"),
                 ZeroPaddedConv2D(config.latent_channels, 3)], name=name)

        self.synthesis_mean = synthesis("h_s_mean")
        self.synthesis_scale = synthesis("h_s_scale")
        self.z_prior = tfc.NoisyDeepFactorized(
            batch_shape=[width], num_filters=(3, 3, 3), init_scale=10.0)
        self._log_scale_min, self._log_scale_step = config.log_scale_grid()
        self._num_scales = config.num_scales
        self.z_model = FlooredBatchedModel(self.z_prior, coding_rank=3, compression=False)
        self.y_model = FlooredIndexedModel(
            tfc.NoisyNormal, self._num_scales, self._scale_from_index, coding_rank=3,
            compression=False)
        self._hyper_synthesis = config.hyper_synthesis
        self._latent_channels = config.latent_channels
        self.tables: CodingTables | None = None
        self.coder: Coder | None = None
        self._integer_mean: IntegerSynthesis | None = None
        self._integer_scale: IntegerSynthesis | None = None

    def _scale_from_index(self, index: tf.Tensor) -> tf.Tensor:
        return tf.exp(self._log_scale_min + self._log_scale_step * index)

    def _scale_index(self, scale: tf.Tensor) -> tf.Tensor:
        """Fractional position of `scale` in the scale table (clipped by the entropy model).

        The scale is bounded below by the table's first entry as the authors bound it
        (tensorflow-compression 1.x's lower_bound): where it is below, the gradient still
        passes when it would move the scale up (tf.maximum would pass none).
        """
        log_scale = tf.math.log(tfc.lower_bound(scale, math.exp(self._log_scale_min)))
        return (log_scale - self._log_scale_min) / self._log_scale_step

    def z_medians(self) -> tf.Tensor:
        """The median of z's prior per channel [hyper_channels], without gradient.

        The rate control rounds z around it, as the authors do (they learn it as the
        bottleneck's quantiles) and as the range coder does (tensorflow-compression takes
        the prior's median as z's quantization offset). Found by bisection on the
        cumulative: doubling a bracket around 0, then halving it.
        """
        base = self.z_prior.base

        def widen(half_width: tf.Tensor) -> tf.Tensor:
            outside = (base.cdf(-half_width) > 0.5) | (base.cdf(half_width) < 0.5)
            return (tf.where(outside, 2.0 * half_width, half_width),)

        def halve(low: tf.Tensor, high: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            middle = 0.5 * (low + high)
            below = base.cdf(middle) < 0.5
            return tf.where(below, middle, low), tf.where(below, high, middle)

        # Loops rather than unrolled steps: one small op in a traced step, not hundreds.
        (half_width,) = tf.while_loop(lambda _: True, widen, (tf.ones(base.batch_shape),),
                                      maximum_iterations=_MEDIAN_BRACKET_DOUBLINGS)
        low, high = tf.while_loop(lambda *_: True, halve, (-half_width, half_width),
                                  maximum_iterations=_MEDIAN_BISECTIONS)
        return tf.stop_gradient(0.5 * (low + high))

    def latent_for_discriminator(self, y: tf.Tensor) -> tf.Tensor:
        """y_hat as a training pass makes it (z perturbed by uniform noise, y rounded around
        h_s's means), without any rate: all that D's update needs of the hyperprior."""
        z_tilde, _ = tfc.perturb_and_apply(tf.identity, self.analysis(y),
                                           expected_grads=False)
        mean = crop(self.synthesis_mean(z_tilde), tf.shape(y)[1:3])
        return tfc.round_st(y - mean) + mean

    def _mean_and_index(self, z_hat: tf.Tensor, y_shape: tf.Tensor
                        ) -> tuple[tf.Tensor, tf.Tensor]:
        """y's means and fractional scale indexes from z_hat, cropped to y's [height, width]
        `y_shape`."""
        return (crop(self.synthesis_mean(z_hat), y_shape),
                self._scale_index(crop(self.synthesis_scale(z_hat), y_shape)))

    def call(self, y: tf.Tensor, training: bool = True) -> TrainingOutputs:
        """Training-mode pass: noisy rates of y and z and the straight-through y_hat."""
        z = self.analysis(y)
        z_tilde, z_bits = self.z_model(z, training=training)
        mean, index = self._mean_and_index(z_tilde, tf.shape(y)[1:3])
        _, y_bits = self.y_model(y, index, loc=mean, training=training)
        y_hat = tfc.round_st(y - mean) + mean
        if training:
            # The rate control compares the quantised estimate with the target: z rounded
            # around its medians, y around its means.
            medians = self.z_medians()
            z_stopped = tf.cast(tf.stop_gradient(z), medians.dtype)  # float32 under mixed
            z_rounded = tf.floor(z_stopped + 0.5 - medians) + medians  # precision, too
            z_bits_rounded = self.z_model.quantized_bits(z_rounded)
            _, y_bits_rounded = self.y_model(tf.stop_gradient(y), tf.stop_gradient(index),
                                             loc=tf.stop_gradient(mean), training=False)
            quantized_bits = tf.stop_gradient(z_bits_rounded + y_bits_rounded)
        else:
            quantized_bits = y_bits + z_bits
        return TrainingOutputs(y_hat=y_hat, y_bits=y_bits, z_bits=z_bits,
                               quantized_bits=quantized_bits)

    @property
    def prepared(self) -> bool:
        return self.coder is not None

    def prepare_for_coding(self, tables: CodingTables | None = None,
                           z_tables: ZTables | None = None) -> None:
        """Fixes the coding tables (once per model, after the weights are final).

        `tables` are stored tables (a bundled, converted or exported model): they are used as
        they are. Without them the tables are computed from the current weights, with z's
        replaced by `z_tables` if given (those of an imported graph). The tables become
        variables, so that a SavedModel carries exactly the tables its encoder used.
        """
        if self.prepared:
            raise RuntimeError(
                "coding tables are already fixed for this model; build a new model to code "
                "with changed weights")
        if self._hyper_synthesis == "integer":
            self._integer_mean = IntegerSynthesis(self.synthesis_mean, "h_s_mean_integer")
            self._integer_scale = IntegerSynthesis(self.synthesis_scale, "h_s_scale_integer")
        if tables is None:
            step = None if self._integer_scale is None else self._integer_scale.step.numpy()
            tables = build_tables(self.z_prior, self._num_scales, self._scale_from_index,
                                  self._latent_channels, step, z_tables)
        expected = (self._latent_channels, self._num_scales - 1)
        if tables.scale_thresholds.shape != expected:
            raise ValueError(f"stored scale thresholds have shape "
                             f"{tables.scale_thresholds.shape}, the model needs {expected}")
        self.tables = tables
        self.coder = Coder(tables)

    @property
    def strip_halo(self) -> tuple[int, int] | None:
        """Rows of z beyond a strip's own that h_s reads when it runs in strips (integer
        mode); None where it runs whole."""
        synthesis = self._integer_mean
        return synthesis.halo if synthesis is not None and synthesis.rows_tileable else None

    def _over_strips(self, z_hat: tf.Tensor, y_shape: tf.Tensor, z_rows: tf.Tensor | None,
                     body, state: tuple, dtypes: tuple) -> tuple[tuple, tuple]:
        """Runs `body` over y's rows in strips, top to bottom, with each strip's coding
        parameters; returns the last state and body's outputs joined along the rows.

        body(top, mean, index, exact, state) → (state, outputs): `top` is the strip's first
        row of y, `mean` and int32 `index` are y's means and table indexes on the strip's
        rows ([B, rows, width, C], cropped to y's [height, width] `y_shape`), `exact`
        whether they are exact (always true in float mode, which promises nothing), `state`
        a tuple of tensors carried from strip to strip and `outputs` a tuple of
        [B, rows, width, C] tensors of `dtypes`.

        In integer mode both come from exact integer arithmetic (see entropy_coding), so every
        machine derives the same values from the same z_hat, and h_s may run in strips of
        `z_rows` rows of z (one image; None: one strip, the whole latent, of any batch) with
        the same values: its float64 buffers are 16 times z's positions and wide, and
        whole-latent means, indexes and symbols would each be as large as y (tiling.py
        sizes the strips). Float mode runs whole.
        """
        check_prepared(self.prepared)
        thresholds = self.coder.scale_thresholds
        if self._integer_mean is None:
            return body(0, crop(self.synthesis_mean(z_hat), y_shape),
                        table_index(crop(self.synthesis_scale(z_hat), y_shape), thresholds),
                        tf.constant(True), state)

        def parameters(top, bottom):
            # Output rows top...bottom - 1, the mean network's first, then the scale's.
            end = y_shape[0] if top is None else tf.minimum(bottom, y_shape[0]) - top
            mean_accumulator, mean_exact = self._integer_mean.accumulate(z_hat, top, bottom)
            mean = self._integer_mean.outputs(crop(mean_accumulator, [end, y_shape[1]]))
            with tf.control_dependencies([mean]):
                scale_accumulator, scale_exact = self._integer_scale.accumulate(
                    z_hat, top, bottom)
            index = table_index(crop(scale_accumulator, [end, y_shape[1]]), thresholds)
            return mean, index, tf.logical_and(mean_exact, scale_exact)

        if z_rows is None or self.strip_halo is None:
            return body(0, *parameters(None, None), state)
        starts, ends = tiling.spans(tf.shape(z_hat)[1], z_rows)
        upsampling = self._integer_mean.upsampling

        def one_strip(i, state, pieces):
            top = upsampling * starts[i]
            state, outputs = body(top, *parameters(top, upsampling * ends[i]), state)
            return (i + 1, state,
                    tuple(piece.write(i, output[0])
                          for piece, output in zip(pieces, outputs, strict=True)))

        pieces = tuple(tf.TensorArray(dtype, size=tf.size(starts), infer_shape=False,
                                      element_shape=tf.TensorShape([None, None,
                                                                    self._latent_channels]))
                       for dtype in dtypes)
        _, state, pieces = tf.while_loop(lambda i, *_: i < tf.size(starts), one_strip,
                                         [0, state, pieces], parallel_iterations=1)
        return state, tuple(piece.concat()[tf.newaxis] for piece in pieces)

    def compress(self, y: tf.Tensor, z_rows: tf.Tensor | None = None,
                 with_y_hat: bool = True) -> Coded:
        """Codes a batch of latents (one, if h_s runs in strips of `z_rows`); returns strings
        and the quantised latents (y_hat None unless `with_y_hat`).

        y is range coded strip by strip as h_s's strips come, so no whole-latent means,
        indexes or symbols exist; the string is the same as coding y at once."""
        z = self.analysis(y)
        z_strings, z_hat = self.coder.encode_z(z)

        def encode(top, mean, index, exact, state):
            exact = bitstream.check(
                exact, "the image's hyper-latent is too large for exact integer arithmetic "
                "in h_s, so its file would not decode the same everywhere")
            with tf.control_dependencies([exact]):
                rows = y[:, top:top + tf.shape(mean)[1]]
                handle = self.coder.encode_y(state[0], rows, mean, index)
            return (handle,), ((tf.round(rows - mean) + mean,) if with_y_hat else ())

        (handle,), y_hat = self._over_strips(
            z_hat, tf.shape(y)[1:3], z_rows, encode, (self.coder.y_encoder(tf.shape(y)[:1]),),
            (tf.float32,) if with_y_hat else ())
        return Coded(z_strings=z_strings, y_strings=self.coder.finish_y(handle), z_hat=z_hat,
                     y_hat=y_hat[0] if with_y_hat else None)

    def decompress(self, z_strings: tf.Tensor, y_strings: tf.Tensor, y_shape: tf.Tensor,
                   z_rows: tf.Tensor | None = None) -> tf.Tensor:
        """Recovers y_hat from the strings; `y_shape` is y's [height, width] (int32), `z_rows`
        as for `compress`, y being decoded strip by strip. A string the range decoder cannot
        read to its end fails a check (bitstream.check_message)."""
        check_prepared(self.prepared)
        fits = bitstream.check(
            self.coder.z_string_fits(tf.strings.length(z_strings[0]), z_shape(y_shape)),
            "the file is corrupt: its z string is too short for the image size in its header")
        with tf.control_dependencies([fits]):
            z_hat, z_sane = self.coder.decode_z(z_strings, z_shape(y_shape))

        def decode(_top, mean, index, _exact, state):
            handle, y_hat = self.coder.decode_y(state[0], mean, index)
            return (handle,), (y_hat,)

        # A damaged z string stops here, before y (16 times as many symbols) is decoded.
        with tf.control_dependencies([_check_sane(z_sane)]):
            (handle,), (y_hat,) = self._over_strips(
                z_hat, y_shape, z_rows, decode, (self.coder.y_decoder(y_strings),),
                (tf.float32,))
        with tf.control_dependencies([_check_sane(self.coder.finish_decoding_y(handle))]):
            return tf.identity(y_hat)
