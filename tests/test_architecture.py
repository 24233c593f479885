"""The networks against HIFIC_SPEC.md: parameter counts, shapes, ChannelNorm, D's design."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.configs import ModelConfig, TrainingRecipe, model_preset
from hific_tf.nn.layers import (
    ChannelNorm,
    SpectralNormConv2D,
    ZeroPaddedConv2D,
    ZeroPaddedConv2DTranspose,
)
from hific_tf.nn.networks import Discriminator, random_roll


def conv_params(kernel: int, inputs: int, outputs: int) -> int:
    return kernel * kernel * inputs * outputs + outputs


def norm_params(channels: int) -> int:
    return 2 * channels


def spec_counts() -> dict[str, int]:
    """Parameter counts worked out by hand from the spec's layer list."""
    encoder = conv_params(7, 3, 60) + norm_params(60)
    for a, b in ((60, 120), (120, 240), (240, 480), (480, 960)):
        encoder += conv_params(3, a, b) + norm_params(b)
    encoder += conv_params(3, 960, 220)

    generator = norm_params(220) + conv_params(3, 220, 960) + norm_params(960)
    generator += 9 * 2 * (conv_params(3, 960, 960) + norm_params(960))
    for a, b in ((960, 480), (480, 240), (240, 120), (120, 60)):
        generator += conv_params(3, a, b) + norm_params(b)
    generator += conv_params(7, 60, 3)

    analysis = conv_params(3, 220, 320) + 2 * conv_params(5, 320, 320)
    synthesis = 2 * conv_params(5, 320, 320) + conv_params(3, 320, 220)
    # Deep factorized prior, filters (3, 3, 3): matrices 1x3, 3x3, 3x3, 3x1, biases and
    # the three non-linearity factors, per channel.
    prior = 320 * ((3 + 9 + 9 + 3) + (3 + 3 + 3 + 1) + (3 + 3 + 3))
    hyperprior = analysis + 2 * synthesis + prior

    discriminator = conv_params(3, 220, 12) + conv_params(4, 15, 64)
    for a, b in ((64, 128), (128, 256), (256, 512), (512, 1)):
        discriminator += conv_params(4, a, b)
    return {"encoder": encoder, "generator": generator, "hyperprior": hyperprior,
            "discriminator": discriminator}


def trainable_count(layer: tf.Module) -> int:
    return sum(int(np.prod(v.shape)) for v in layer.trainable_variables)


@pytest.mark.slow
def test_full_size_parameter_counts_match_spec():
    model = HiFiC(model_preset("hific")).build_weights()
    discriminator = Discriminator(model.config)
    discriminator((tf.zeros([1, 64, 64, 3]), tf.zeros([1, 4, 4, 220])))
    counts = {"encoder": trainable_count(model.encoder),
              "generator": trainable_count(model.generator),
              "hyperprior": trainable_count(model.hyperprior),
              "discriminator": trainable_count(discriminator)}
    published = {"encoder": 7.42e6, "generator": 156.77e6, "hyperprior": 17.28e6,
                 "discriminator": 2.80e6}
    for name, count in counts.items():
        assert abs(count - published[name]) / published[name] < 0.005, (name, count)
    assert counts == spec_counts()


def test_channel_norm_matches_numpy_formula(rng):
    x = rng.normal(size=(2, 5, 7, 6)).astype(np.float32) * 3 + 1
    layer = ChannelNorm(epsilon=1e-3)
    got = layer(tf.constant(x)).numpy()
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(variance + 1e-3), rtol=1e-5,
                               atol=1e-5)


def test_channel_norm_is_the_same_on_any_tile(rng):
    x = tf.constant(rng.normal(size=(1, 16, 16, 8)).astype(np.float32))
    layer = ChannelNorm()
    whole = layer(x).numpy()
    np.testing.assert_array_equal(layer(x[:, 4:9, 3:11]).numpy(), whole[:, 4:9, 3:11])


def test_channel_norm_keeps_its_float32_arithmetic_bit_for_bit(rng):
    # Stored files decode only if G computes as it did when they were written.
    x = tf.constant(rng.normal(size=(2, 6, 5, 12)).astype(np.float32) * 40 + 3)
    layer = ChannelNorm(epsilon=1e-3)
    layer.build(x.shape)
    layer.gamma.assign(rng.uniform(0.5, 2.0, 12).astype(np.float32))
    layer.beta.assign(rng.normal(size=12).astype(np.float32))
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centred = x - tf.stop_gradient(mean)
    variance = tf.reduce_sum(tf.square(centred), axis=-1, keepdims=True) / 11.0
    before = layer.gamma * tf.math.divide_no_nan(x - mean, tf.sqrt(variance + 1e-3)) + \
        layer.beta
    np.testing.assert_array_equal(layer(x).numpy(), before.numpy())


def test_channel_norm_statistics_survive_float16(rng):
    # An RMS of 100 a channel: 16 squares sum past float16's largest value (65 504).
    x = rng.normal(size=(1, 4, 4, 16)).astype(np.float32) * 100
    layer = ChannelNorm(dtype="mixed_float16")
    half = layer(tf.constant(x, tf.float16))
    assert half.dtype == tf.float16
    reference = ChannelNorm()(tf.constant(x.astype(np.float16).astype(np.float32)))
    assert np.isfinite(half.numpy()).all()
    np.testing.assert_allclose(half.numpy().astype(np.float32), reference.numpy(), atol=5e-3)


def test_channel_norm_gradient_stops_through_variance_mean(rng):
    # With the mean inside the variance a stop-gradient, d/dx of sum(y) is not zero (it
    # would be for a full normalisation, whose outputs sum to zero for any input).
    x = tf.constant(rng.normal(size=(1, 1, 1, 4)).astype(np.float32))
    layer = ChannelNorm()
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.square(layer(x)))
    gradient = tape.gradient(total, x).numpy()
    # Reference: the same formula with the variance's mean held constant, by finite
    # differences in NumPy.
    x0 = x.numpy().ravel().astype(np.float64)
    held_mean = x0.mean()

    def f(v: np.ndarray) -> float:
        variance = ((v - held_mean) ** 2).sum() / (v.size - 1)
        return float((((v - v.mean()) / np.sqrt(variance + 1e-3)) ** 2).sum())

    numeric = np.array([(f(x0 + d) - f(x0 - d)) / 2e-4 for d in np.eye(4) * 1e-4])
    np.testing.assert_allclose(gradient.ravel(), numeric, rtol=1e-2, atol=1e-3)


def test_shapes_through_the_networks():
    config = model_preset("tiny")
    model = HiFiC(config).build_weights()
    images = tf.random.uniform([2, 128, 192, 3])
    y = model.encoder(images)
    assert y.shape == (2, 8, 12, config.latent_channels)
    z = model.hyperprior.analysis(y)
    assert z.shape == (2, 2, 3, config.hyper_channels)
    assert model.generator(y).shape == (2, 128, 192, 3)
    outputs = model(images, training=True)
    assert outputs.reconstruction.shape == images.shape
    assert outputs.y_bits.shape == (2,) and outputs.z_bits.shape == (2,)
    np.testing.assert_allclose(outputs.bpp.numpy(),
                               (outputs.y_bits + outputs.z_bits).numpy() / (128 * 192),
                               rtol=1e-6)
    discriminator = Discriminator(config)
    assert discriminator((images, outputs.y_hat)).shape == (2, 16, 24, 1)


def test_full_generator_layout_follows_the_spec():
    config = ModelConfig()
    assert config.generator_channels == (960, 480, 240, 120, 60)
    assert config.residual_blocks == 9 and config.latent_channels == 220


def test_the_model_codes_y_with_the_papers_scale_table():
    # The scales y's entropy model indexes: 64 from 0.11 to 256, evenly spaced in log.
    y_model = HiFiC(ModelConfig()).hyperprior.y_model
    table = y_model.parameter_fns["scale"](tf.range(64, dtype=tf.float32)).numpy()
    np.testing.assert_allclose(table, np.geomspace(0.11, 256.0, 64), rtol=1e-5)
    np.testing.assert_allclose(ModelConfig().scale_table(), table, rtol=1e-6)
    assert y_model.index_ranges == (64,)


def test_training_pass_uses_straight_through_quantised_latent():
    tf.keras.utils.set_random_seed(3)
    model = HiFiC(model_preset("tiny")).build_weights()
    images = tf.random.uniform([1, 64, 64, 3])
    with tf.GradientTape() as tape:
        outputs = model(images, training=True)
        loss = tf.reduce_sum(outputs.y_hat)
    gradients = tape.gradient(loss, model.encoder.trainable_variables)
    # The identity gradient reaches the encoder through round().
    assert all(g is not None for g in gradients)
    assert float(tf.reduce_sum(tf.abs(gradients[-1]))) > 0


def test_discriminator_is_spectrally_normalised_and_conditioned():
    tf.keras.utils.set_random_seed(4)
    config = model_preset("tiny")
    discriminator = Discriminator(config)
    image = tf.random.uniform([1, 64, 64, 3])
    latent = tf.random.normal([1, 4, 4, config.latent_channels])
    logits = discriminator((image, latent))
    wrapped = [discriminator.condition, *discriminator.body, discriminator.logits]
    assert all(isinstance(layer, SpectralNormConv2D) for layer in wrapped)
    assert all(layer.power_iterations == 1 for layer in wrapped)
    assert not np.allclose(discriminator((image, latent + 1.0)).numpy(), logits.numpy())
    with tf.GradientTape() as tape:
        tape.watch(latent)
        out = tf.reduce_sum(discriminator((image, latent)))
    assert tape.gradient(out, latent) is None  # the condition is a stop-gradient


def test_discriminator_initialisation_is_normal_002():
    tf.keras.utils.set_random_seed(5)
    config = ModelConfig()
    discriminator = Discriminator(config)
    discriminator((tf.zeros([1, 64, 64, 3]), tf.zeros([1, 4, 4, 220])))
    kernel = discriminator.body[3].kernel.numpy()
    assert kernel.std() == pytest.approx(0.02, rel=0.05)
    assert np.all(discriminator.body[3].bias.numpy() == 0)


def test_spectral_norm_divides_by_the_largest_singular_value(rng):
    layer = SpectralNormConv2D(6, 3, power_iterations=1)
    images = tf.constant(rng.normal(size=(1, 8, 8, 4)).astype(np.float32))
    layer(images, training=True)
    for _ in range(200):  # the persistent u converges across training calls
        layer(images, training=True)
    matrix = layer.kernel.numpy().reshape(-1, 6)
    sigma = np.linalg.svd(matrix, compute_uv=False)[0]
    np.testing.assert_allclose(layer.normalized_kernel(False).numpy(),
                               layer.kernel.numpy() / sigma, rtol=1e-4)
    expected = tf.nn.conv2d(images, layer.kernel / sigma, 1, "SAME").numpy()
    np.testing.assert_allclose(layer(images).numpy(), expected, rtol=1e-4, atol=1e-5)


def numpy_correlation(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Reference: zero-pad (k//2, (k-1)//2) on each side, then a strided correlation."""
    size = kernel.shape[0]
    before, after = size // 2, (size - 1) // 2
    padded = np.pad(x, ((before, after), (before, after), (0, 0)))
    rows = (padded.shape[0] - size) // stride + 1
    columns = (padded.shape[1] - size) // stride + 1
    out = np.zeros((rows, columns, kernel.shape[3]))
    for i in range(rows):
        for j in range(columns):
            window = padded[i * stride:i * stride + size, j * stride:j * stride + size]
            out[i, j] = np.tensordot(window, kernel, axes=3)
    return out


def numpy_transposed(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """Reference: the adjoint of `numpy_correlation` onto stride * n outputs, scattering
    x[n] * w[t] to output n * stride + t - k//2 (kernel [k, k, out, in])."""
    size = kernel.shape[0]
    before = size // 2
    out = np.zeros((x.shape[0] * stride, x.shape[1] * stride, kernel.shape[2]))
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            for a in range(size):
                for b in range(size):
                    row, column = i * stride + a - before, j * stride + b - before
                    if 0 <= row < out.shape[0] and 0 <= column < out.shape[1]:
                        out[row, column] += kernel[a, b] @ x[i, j]
    return out


@pytest.mark.parametrize("size, stride, height, width", [
    (3, 1, 5, 6), (5, 2, 6, 8), (5, 2, 7, 5), (3, 2, 4, 7)])
def test_zero_padded_convolutions_match_a_numpy_reference(size, stride, height, width, rng):
    x = rng.normal(size=(height, width, 3))
    layer = ZeroPaddedConv2D(4, size, strides=stride)
    got = layer(tf.constant(x[np.newaxis], tf.float32)).numpy()[0]
    expected = numpy_correlation(x, layer.kernel.numpy(), stride) + layer.bias.numpy()
    assert got.shape == (-(-height // stride), -(-width // stride), 4)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    if stride == 2:
        transposed = ZeroPaddedConv2DTranspose(4, size, strides=stride)
        got = transposed(tf.constant(x[np.newaxis], tf.float32)).numpy()[0]
        expected = numpy_transposed(x, transposed.kernel.numpy(), stride)
        np.testing.assert_allclose(got, expected + transposed.bias.numpy(), atol=1e-5)


def test_hyperprior_layers_align_as_the_authors_do_not_as_keras_same():
    """A centred delta kernel shows the alignment: the authors' 5x5 stride-2 layer samples
    rows 0, 2, 4, ... of an even-sized input (Keras "same" samples 1, 3, 5, ...), and their
    transposed layer writes input n to output 2n (Keras "same": 2n + 1)."""
    delta = np.zeros((5, 5, 1, 1), np.float32)
    delta[2, 2] = 1.0
    x = tf.reshape(tf.range(64, dtype=tf.float32), [1, 8, 8, 1])
    down = ZeroPaddedConv2D(1, 5, strides=2, use_bias=False)
    down.build(x.shape)
    down.kernel.assign(delta)
    np.testing.assert_array_equal(down(x).numpy()[0, :, :, 0], x.numpy()[0, ::2, ::2, 0])
    keras = tf.keras.layers.Conv2D(1, 5, strides=2, padding="same", use_bias=False)
    keras.build(x.shape)
    keras.kernel.assign(delta)
    np.testing.assert_array_equal(keras(x).numpy()[0, :, :, 0], x.numpy()[0, 1::2, 1::2, 0])
    up = ZeroPaddedConv2DTranspose(1, 5, strides=2, use_bias=False)
    small = x[:, :4, :4]
    up.build(small.shape)
    up.kernel.assign(delta)
    upsampled = up(small).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(upsampled[::2, ::2], small.numpy()[0, :, :, 0])
    assert np.count_nonzero(upsampled) == np.count_nonzero(small)


def test_coding_pads_to_16_and_crops_h_s_to_y(tiny_model):
    """100 x 74 pads to 112 x 80: y 7 x 5, z 2 x 2, h_s's 8 x 8 cropped to 7 x 5."""
    assert tiny_model.config.pad_multiple == 16
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (100, 74, 3)), tf.uint8)
    coded, _, _ = tiny_model.encode(image)
    assert coded.y_hat.shape[1:3] == (7, 5) and coded.z_hat.shape[1:3] == (2, 2)
    outputs = tiny_model(tf.zeros([1, 112, 80, 3]), training=True)
    assert outputs.y_hat.shape[1:3] == (7, 5)
    decoded = tiny_model.decompress(tiny_model.compress(image))
    assert decoded.shape == (100, 74, 3)


@pytest.mark.parametrize("height,width", [(1, 1), (3, 70), (64, 64), (65, 130), (100, 37)])
def test_reflect_padding(height, width, rng):
    image = rng.integers(0, 255, size=(height, width, 2)).astype(np.float32)
    padded = reflect_pad(tf.constant(image), 64).numpy()
    target = (-(-height // 64) * 64, -(-width // 64) * 64)
    assert padded.shape[:2] == target
    np.testing.assert_array_equal(padded[:height, :width], image)
    pad_h, pad_w = target[0] - height, target[1] - width
    if pad_h < height and pad_w < width:  # NumPy's reflect needs the image to be larger
        np.testing.assert_array_equal(
            padded, np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect"))
    if height == 1 and width == 1:
        assert np.all(padded == image[0, 0])


def test_config_round_trips_through_json_and_rejects_bad_values():
    config = model_preset("tiny")
    assert ModelConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="encoder_channels"):
        ModelConfig(encoder_channels=(8, 16))
    with pytest.raises(ValueError, match="unknown model preset"):
        model_preset("nope")


def test_random_roll_rolls_each_image_by_its_own_shift_and_passes_gradients():
    tf.keras.utils.set_random_seed(6)
    images = tf.reshape(tf.range(4 * 10 * 12 * 2, dtype=tf.float32), [4, 10, 12, 2])
    with tf.GradientTape() as tape:
        tape.watch(images)
        rolled = random_roll(images, max_shift=8)
        loss = tf.reduce_sum(rolled * tf.range(2, dtype=tf.float32))
    shifts = set()
    for original, result in zip(images.numpy(), rolled.numpy(), strict=True):
        matches = [(dy, dx) for dy in range(8) for dx in range(8)
                   if np.array_equal(np.roll(original, (dy, dx), axis=(0, 1)), result)]
        assert len(matches) == 1  # a circular roll by one shift below max_shift
        shifts.add(matches[0])
    assert len(shifts) > 1  # drawn per image, not once per batch
    # A roll permutes pixels, so each input pixel gets exactly its channel's weight.
    expected = np.broadcast_to(np.arange(2, dtype=np.float32), images.shape)
    np.testing.assert_array_equal(tape.gradient(loss, images).numpy(), expected)


def test_discriminator_shift_is_off_by_default_and_rolls_image_with_condition(monkeypatch):
    tf.keras.utils.set_random_seed(7)
    config = model_preset("tiny")
    discriminator = Discriminator(config)
    image = tf.random.uniform([2, 64, 64, 3])
    latent = tf.random.normal([2, 4, 4, config.latent_channels])
    logits = discriminator((image, latent)).numpy()
    np.testing.assert_array_equal(discriminator((image, latent), max_shift=0).numpy(), logits)
    assert TrainingRecipe().discriminator_shift == 0  # the paper's D sees no shift
    shifted = discriminator((image, latent), max_shift=16).numpy()
    assert shifted.shape == logits.shape and not np.allclose(shifted, logits)
    rolled = []

    def recording_roll(hidden: tf.Tensor, max_shift: int) -> tf.Tensor:
        rolled.append((hidden.shape[-1], max_shift))
        return hidden

    monkeypatch.setattr("hific_tf.nn.networks.random_roll", recording_roll)
    # One roll of image and condition together, so the pair stays aligned.
    np.testing.assert_allclose(discriminator((image, latent), max_shift=5).numpy(), logits,
                               atol=1e-6)
    assert rolled == [(3 + config.discriminator_condition_channels, 5)]
    with pytest.raises(ValueError, match="discriminator_shift must be 0 or more"):
        TrainingRecipe(discriminator_shift=-1)


def test_network_differences_ignore_only_what_no_loaded_weight_depends_on():
    config = model_preset("tiny")
    float_coding = ModelConfig.from_json(config.to_json().replace(
        '"hyper_synthesis": "integer"', '"hyper_synthesis": "float"'))
    assert float_coding != config and config.network_differences(float_coding) == []
    # D starts fresh whenever E, G and P load.
    other_discriminator = dataclasses.replace(config, discriminator_condition="none",
                                              discriminator_channels=(4, 8, 8, 8))
    assert config.network_differences(other_discriminator) == []
    assert config.network_differences(model_preset("small"))[0] == "latent_channels 64, not 16"
    assert config.network_differences(dataclasses.replace(config, normalization="batch")) == [
        "normalization 'batch', not 'channel'"]
