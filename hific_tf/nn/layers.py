"""Building blocks shared by the networks: the normalizations (ChannelNorm, InstanceNorm,
batch normalization) and the generator's residual block."""

from __future__ import annotations

import tensorflow as tf


class Chain(tf.keras.Sequential):
    """A Keras Sequential that calls its layers in turn.

    Keras' Sequential otherwise builds a functional graph of its layers (autograph
    conversion included) for every input shape it has not seen, eagerly: about a second of
    every command's start-up for building the weights, and again when the coding functions
    are traced. The layers, their weights and their order are the same.
    """

    def __init__(self, layers: list[tf.keras.layers.Layer] | None = None,
                 name: str | None = None) -> None:
        super().__init__(layers, name=name)
        self._use_legacy_deferred_behavior = True


class ChannelNorm(tf.keras.layers.Layer):
    """Normalises each pixel over its channels only (the paper's ChannelNorm).

    mean and the unbiased variance are taken over the channel axis; the mean inside the
    variance is a stop-gradient. With no running statistics the layer behaves identically at
    any resolution and on any tile of an image. The statistics and the normalisation are
    computed in float32 whatever the input's dtype (a float16 sum of squares overflows past
    an RMS of about 8 per pixel); gamma and beta apply in the input's dtype.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tf.TensorShape) -> None:
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError("ChannelNorm needs at least 2 channels")
        self.gamma = self.add_weight(name="gamma", shape=[channels], initializer="ones")
        self.beta = self.add_weight(name="beta", shape=[channels], initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        # A no-op under float32, so that float32 models compute exactly as before.
        values = tf.cast(inputs, tf.float32)
        channels = tf.cast(tf.shape(values)[-1], tf.float32)
        mean = tf.reduce_mean(values, axis=-1, keepdims=True)
        centred = values - tf.stop_gradient(mean)
        variance = tf.reduce_sum(tf.square(centred), axis=-1, keepdims=True) / (channels - 1)
        # A division by the square root, both correctly rounded, rather than rsqrt, whose
        # vectorised and scalar kernels differ in the last bit: each pixel then normalises
        # identically wherever it lies in a tensor, which tiled coding relies on.
        # (divide_no_nan, because graph optimisation rewrites x / sqrt(y) into rsqrt.)
        normalised = tf.math.divide_no_nan(values - mean, tf.sqrt(variance + self.epsilon))
        return self.gamma * tf.cast(normalised, inputs.dtype) + self.beta

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


class InstanceNorm(tf.keras.layers.Layer):
    """Normalises each channel of each image over its spatial positions (Ulyanov et al.
    2016), with a learned scale and offset per channel: the normalization the paper sets
    ChannelNorm against (docs/ablations.md).

    The (biased) mean and variance are taken over height and width, so every output depends
    on the whole image: the layer cannot run tile by tile.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape: tf.TensorShape) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=[channels], initializer="ones")
        self.beta = self.add_weight(name="beta", shape=[channels], initializer="zeros")
        super().build(input_shape)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        mean, variance = tf.nn.moments(inputs, axes=[1, 2], keepdims=True)
        normalised = (inputs - mean) / tf.sqrt(variance + self.epsilon)
        return self.gamma * normalised + self.beta

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon}


# ModelConfig.normalization's choices. Batch normalization keeps Keras' moving averages
# (momentum 0.99) for inference, weights like any other once trained.
_NORMALIZATION_LAYERS = {"channel": ChannelNorm, "instance": InstanceNorm,
                         "batch": tf.keras.layers.BatchNormalization}


def normalization(kind: str, epsilon: float, name: str | None = None
                  ) -> tf.keras.layers.Layer:
    """E's and G's normalization layer of `kind` (ModelConfig.normalization)."""
    return _NORMALIZATION_LAYERS[kind](epsilon=epsilon, name=name)


def conv(filters: int, kernel_size: int, strides: int = 1,
         name: str | None = None) -> tf.keras.layers.Conv2D:
    """A zero-"same"-padded convolution with bias and Keras default initialisation."""
    return tf.keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same",
                                  name=name)


def zero_padding(kernel_size: int) -> tuple[int, int]:
    """The authors' "same_zeros" padding of one spatial side (before, after): (k//2, (k-1)//2).

    tensorflow-compression 1.x pads this explicitly in the hyperprior's convolutions; Keras
    "same" instead centres the window by the output size, which for a 5x5 stride-2 layer on
    an even size pads (1, 2) and shifts every output by one input pixel.
    """
    return kernel_size // 2, (kernel_size - 1) // 2


def explicit_padding(kernel_size: tuple[int, int]) -> list[list[int]]:
    """The padding argument of tf.nn.conv2d(_transpose) for `zero_padding` (NHWC)."""
    return [[0, 0], list(zero_padding(kernel_size[0])), list(zero_padding(kernel_size[1])),
            [0, 0]]


def upsampled_shape(inputs: tf.Tensor, strides: tuple[int, int], channels: tf.Tensor | int
                    ) -> tf.Tensor:
    """The output shape of a transposed convolution that multiplies each side of `inputs`
    (NHWC) by its stride, as tensorflow-compression 1.x's upsampling layers do."""
    shape = tf.shape(inputs)
    return tf.stack([shape[0], shape[1] * strides[0], shape[2] * strides[1], channels])


class ZeroPaddedConv2D(tf.keras.layers.Conv2D):
    """A convolution with the authors' explicit zero padding (see `zero_padding`).

    Its output size is Keras "same"'s (ceil(n / stride)) for the odd kernels used here; only
    the alignment of the window differs. Weights are laid out as in tf.keras Conv2D.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1,
                 activation: str | None = None, **kwargs) -> None:
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, strides=strides, padding="same",
                         activation=activation, **kwargs)

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return tf.nn.conv2d(inputs, kernel, strides=self.strides,
                            padding=explicit_padding(self.kernel_size))


class ZeroPaddedConv2DTranspose(tf.keras.layers.Conv2DTranspose):
    """A transposed convolution that multiplies each side by its stride, with the authors'
    explicit zero padding of the equivalent forward convolution (see `zero_padding`).

    This is tensorflow-compression 1.x's upsampling SignalConv2D ("same_zeros", corr=False,
    extra_pad_end): Conv2DBackpropInput with explicit padding and output size n * stride.
    The kernel is [k, k, filters, input channels], as in tf.keras Conv2DTranspose.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 2,
                 activation: str | None = None, **kwargs) -> None:
        kwargs.pop("padding", None)
        super().__init__(filters, kernel_size, strides=strides, padding="same",
                         activation=activation, **kwargs)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        outputs = tf.nn.conv2d_transpose(inputs, self.kernel,
                                         upsampled_shape(inputs, self.strides, self.filters),
                                         self.strides, padding=explicit_padding(self.kernel_size))
        outputs.set_shape(self.compute_output_shape(inputs.shape))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs if self.activation is None else self.activation(outputs)


class PhaseConv2DTranspose(tf.keras.layers.Conv2DTranspose):
    """The 3x3, stride-2, "same" transposed convolution, computed outside training as one
    ordinary 2x2 convolution giving the four output phases, then depth_to_space.

    Same weights and the same sums as Keras' layer, in another order. The reason is
    determinism: multi-threaded oneDNN splits a transposed convolution's work by the
    tensor's shape and rounds some outputs differently in the last bit, so an image
    decoded in tiles would differ from one decoded whole; an ordinary convolution rounds
    every output alike (tiling.py relies on that). Training keeps Keras' kernel.

    With no top/left padding, output 2m + p reads inputs m - 1 and m: for p = 0 through
    kernel taps 2 and 0, for p = 1 through tap 1 only (the other tap is zero).
    """

    # Per output phase, the kernel tap applied to inputs m - 1 and m (3: none).
    _TAPS = ((2, 0), (3, 1))

    def __init__(self, filters: int, **kwargs) -> None:
        super().__init__(filters, 3, strides=2, padding="same", **kwargs)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if training:
            return super().call(inputs)
        # [3, 3, out, in] → [4, 4, in, out] with a zero tap at index 3.
        kernel = tf.pad(tf.transpose(self.kernel, [0, 1, 3, 2]), [[0, 1], [0, 1], [0, 0],
                                                                   [0, 0]])
        phases = [tf.gather(tf.gather(kernel, self._TAPS[row], axis=0), self._TAPS[column],
                            axis=1)
                  for row in (0, 1) for column in (0, 1)]
        padded = tf.pad(inputs, [[0, 0], [1, 0], [1, 0], [0, 0]])
        outputs = tf.nn.conv2d(padded, tf.concat(phases, axis=-1), 1, "VALID")
        outputs = tf.nn.depth_to_space(outputs, 2)
        outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


class ResidualBlock(tf.keras.layers.Layer):
    """conv 3x3 → Norm → ReLU → conv 3x3 → Norm, plus the identity; `norm` is
    ModelConfig.normalization."""

    def __init__(self, filters: int, norm: str, epsilon: float = 1e-3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conv_a = conv(filters, 3, name="conv_a")
        self.norm_a = normalization(norm, epsilon, name="norm_a")
        self.conv_b = conv(filters, 3, name="conv_b")
        self.norm_b = normalization(norm, epsilon, name="norm_b")

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        hidden = tf.nn.relu(self.norm_a(self.conv_a(inputs)))
        return inputs + self.norm_b(self.conv_b(hidden))


class SpectralNormConv2D(tf.keras.layers.Layer):
    """A conv whose kernel is divided by its largest singular value (Miyato et al. 2018).

    The singular value comes from power iteration on the [k*k*in, out] kernel matrix W with a
    persistent left singular vector u [k*k*in, 1], as compare_gan (the authors' D) keeps it:
    each training call runs `power_iterations` rounds v = W^T u / |.|, u = W v / |.|, stores
    u, and divides by sigma = u^T W v; the gradient flows through W / sigma with u and v held
    constant. The stored kernel stays the raw, unnormalised one.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1,
                 power_iterations: int = 1, stddev: float = 0.02, **kwargs) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.power_iterations = power_iterations
        self.stddev = stddev

    def build(self, input_shape: tf.TensorShape) -> None:
        channels = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=[self.kernel_size, self.kernel_size, channels, self.filters],
            initializer=tf.keras.initializers.RandomNormal(stddev=self.stddev))
        self.bias = self.add_weight(name="bias", shape=[self.filters], initializer="zeros")
        self.u = self.add_weight(
            name="u", shape=[self.kernel_size * self.kernel_size * channels, 1],
            trainable=False, initializer=tf.keras.initializers.RandomNormal(stddev=1.0),
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        super().build(input_shape)

    def normalized_kernel(self, training: bool) -> tf.Tensor:
        """W / sigma(W) in float32, advancing the power iteration when training."""
        # float32 even under a mixed-precision policy, which would autocast the reads.
        kernel = tf.cast(self.kernel, tf.float32)
        matrix = tf.reshape(kernel, [-1, self.filters])
        u = tf.cast(self.u, tf.float32)
        v = tf.math.l2_normalize(tf.matmul(matrix, u, transpose_a=True))
        for _ in range(self.power_iterations if training else 0):
            v = tf.math.l2_normalize(tf.matmul(matrix, u, transpose_a=True))
            u = tf.math.l2_normalize(tf.matmul(matrix, v))
        if training:
            self.u.assign(u)
        u, v = tf.stop_gradient(u), tf.stop_gradient(v)
        sigma = tf.squeeze(tf.matmul(tf.matmul(u, matrix, transpose_a=True), v))
        return kernel / sigma

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        kernel = tf.cast(self.normalized_kernel(bool(training)), inputs.dtype)
        outputs = tf.nn.conv2d(inputs, kernel, strides=self.strides, padding="SAME")
        return tf.nn.bias_add(outputs, tf.cast(self.bias, inputs.dtype))
