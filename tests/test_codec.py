"""Exact round trips, input conversion and coding efficiency of the tiny model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hific_tf.codec import codec_from_model
from hific_tf.coding import bitstream
from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.storage.images import ImageConversionWarning, read_image

from conftest import (
    compiled_untiled_decode,
    compiled_y_hat,
    information_content,
    make_tiny_model,
)


def assert_exact_round_trip(model: HiFiC, image: np.ndarray) -> np.ndarray:
    """Latent bit for bit, image equal to G(latent) cropped (both references compiled, as
    coding is); returns the decoded image."""
    data = model.compress(tf.constant(image)).numpy()
    latent = model.decode_latent(tf.constant(data))
    np.testing.assert_array_equal(latent.y_hat.numpy(), compiled_y_hat(model, image))
    decoded = model.decompress(tf.constant(data)).numpy()
    assert decoded.shape == image.shape and decoded.dtype == np.uint8
    height, width = image.shape[:2]
    np.testing.assert_array_equal(
        decoded, compiled_untiled_decode(model, latent.y_hat, height, width))
    return decoded


@pytest.mark.parametrize("height,width", [(1, 1), (15, 17), (64, 64), (100, 37), (512, 768)])
def test_exact_round_trip_at_any_size(tiny_model, rng, height, width):
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert_exact_round_trip(tiny_model, image)


def test_round_trip_of_a_photo(tiny_model, photos):
    assert_exact_round_trip(tiny_model, read_image(photos[0]))


def test_compress_is_deterministic_and_the_model_id_tracks_weights(tiny_model, rng):
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    first = tiny_model.compress(image).numpy()
    assert tiny_model.compress(image).numpy() == first
    same_weights = make_tiny_model(seed=0)
    assert same_weights.model_id.numpy() == tiny_model.model_id.numpy()
    assert same_weights.compress(image).numpy() == first
    other = make_tiny_model(seed=1)
    assert other.model_id.numpy() != tiny_model.model_id.numpy()


def test_coding_tables_are_fixed_once(tiny_model):
    with pytest.raises(RuntimeError, match="already fixed"):
        tiny_model.hyperprior.prepare_for_coding()
    unprepared = HiFiC(tiny_model.config)
    with pytest.raises(RuntimeError, match="prepare_for_coding"):
        unprepared.compress(np.zeros((8, 8, 3), np.uint8))


def _png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_greyscale_input_becomes_rgb(tmp_path, rng, tiny_model):
    grey = rng.integers(0, 256, size=(33, 21), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is lost, so nothing to warn about
        image = read_image(_png(tmp_path / "grey.png", grey))
    np.testing.assert_array_equal(image, np.repeat(grey[..., None], 3, axis=-1))
    assert_exact_round_trip(tiny_model, image)


def test_rgba_input_drops_alpha_with_a_warning(tmp_path, rng, tiny_model):
    rgba = rng.integers(0, 256, size=(19, 40, 4), dtype=np.uint8)
    with pytest.warns(ImageConversionWarning, match="alpha channel dropped"):
        image = read_image(_png(tmp_path / "rgba.png", rgba))
    np.testing.assert_array_equal(image, rgba[..., :3])
    assert_exact_round_trip(tiny_model, image)


def test_palette_input_becomes_rgb(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    palette_image = Image.fromarray(rgb).quantize(colors=16)
    palette_image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"),
                                  np.asarray(palette_image.convert("RGB")))


def _write_16_bit_png(path, samples: np.ndarray) -> None:
    """A 16-bit PNG written with TensorFlow's encoder (Pillow cannot write 16-bit RGB)."""
    path.write_bytes(tf.io.encode_png(tf.constant(samples)).numpy())


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_input_is_rounded_to_8_bits_with_a_warning(tmp_path, rng, tiny_model,
                                                          channels):
    samples = rng.integers(0, 65536, size=(23, 31, channels), dtype=np.uint16)
    _write_16_bit_png(tmp_path / "deep.png", samples)
    with pytest.warns(ImageConversionWarning) as caught:
        image = read_image(tmp_path / "deep.png")
    messages = [str(w.message) for w in caught]
    assert any("16-bit samples reduced to 8 bits" in m for m in messages)
    assert any("alpha channel dropped" in m for m in messages) == (channels == 4)
    expected = np.round(samples[..., :3] / 257.0).astype(np.uint8)
    if channels == 1:
        expected = np.repeat(expected, 3, axis=-1)
    np.testing.assert_array_equal(image, expected)
    assert_exact_round_trip(tiny_model, image)


def calibrated_model(photos: list[np.ndarray]) -> HiFiC:
    """A tiny model whose y prior fits its latents, so rates are those of a sane model.

    An untrained model's latents fall far outside its scale table, where the range coder's
    escape codes beat −log2 p and any overhead would be hidden. Here the encoder's output is
    spread over several integers and h_s predicts each channel's mean and spread.
    """
    tf.keras.utils.set_random_seed(7)
    model = HiFiC(make_tiny_model().config).build_weights()
    last = model.encoder.layers[-1]
    last.kernel.assign(last.kernel * 8.0)
    latents = np.concatenate([
        model.encoder(reflect_pad(tf.cast(p, tf.float32) / 255.0, 64)[None]).numpy()
        .reshape(-1, model.config.latent_channels) for p in photos])
    for network, bias in ((model.hyperprior.synthesis_mean, latents.mean(axis=0)),
                          (model.hyperprior.synthesis_scale, latents.std(axis=0))):
        output = network.layers[-1]
        output.kernel.assign(tf.zeros_like(output.kernel))
        output.bias.assign(bias)
    return model.prepare_for_coding()


def test_file_size_is_within_one_percent_of_the_information_content(photos):
    images = [read_image(path) for path in photos]
    model = calibrated_model(images)
    for photo in images:
        data = model.compress(photo).numpy()
        x = reflect_pad(tf.cast(photo, tf.float32) / 255.0, 64)[tf.newaxis]
        y_bits, z_bits = information_content(model.hyperprior, model.encoder(x))
        information = float(y_bits[0] + z_bits[0])
        assert information > 50_000  # several bits per symbol: a meaningful comparison
        payload_bits = 8 * (len(data) - bitstream.OVERHEAD_BYTES)
        assert payload_bits <= 1.01 * information, (payload_bits, information)
        assert payload_bits >= 0.97 * information  # the count itself is right
    # The same decoding path still reproduces the latent exactly.
    assert_exact_round_trip(model, images[0])


def test_codec_wrapper_returns_bytes_and_checks_its_input(tiny_model, rng):
    codec = codec_from_model(tiny_model)
    image = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    data = codec.compress(image)
    assert isinstance(data, bytes)
    np.testing.assert_array_equal(codec.decompress(data),
                                  tiny_model.decompress(data).numpy())
    from hific_tf.errors import UserError

    with pytest.raises(UserError, match="uint8 RGB"):
        codec.compress(image.astype(np.float32))
    with pytest.raises(UserError, match="outside 1x1"):
        codec.compress(np.zeros((0, 5, 3), np.uint8))


def test_damaged_image_files_give_one_clear_error(tmp_path, photos):
    from hific_tf.errors import UserError

    (tmp_path / "cut.png").write_bytes(photos[0].read_bytes()[:5000])
    with pytest.raises(UserError, match="damaged or truncated"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(UserError, match="is not an image file"):
        read_image(tmp_path / "notes.png")
    with pytest.raises(UserError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    Image.fromarray(np.zeros((2, 16385, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(UserError, match="is 16385x2; hific-tf codes images from 1x1 to "
                                        "16384x16384"):
        read_image(tmp_path / "wide.png")
