"""NIQE: agreement with scikit-video 1.1.11, the JPEG-quality trend, input checks, the model."""

from __future__ import annotations

import importlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.misc
import tensorflow as tf
from PIL import Image

from hific_tf.evaluation.perceptual import niqe as niqe_module
from hific_tf.evaluation.perceptual.niqe import (
    MIN_SIZE,
    load_niqe_params,
    niqe,
)

from conftest import shared_data


def niqe_batch(images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """NIQE of each image of a uint8 [B, H, W, 3] array or of a list of images, as float64 [B]."""
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise ValueError(f"expected a batch [B, H, W, C], got an array of shape {images.shape}")
    return np.array([niqe(image) for image in images], dtype=np.float64)


def niqe_tf(images: tf.Tensor) -> tf.Tensor:
    """NIQE of a uint8 [B, H, W, 3] tensor as float32 [B]: NumPy on the CPU, no gradient."""
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"NIQE expects uint8 images, got {images.dtype.name}")
    scores = tf.numpy_function(_niqe_batch_float32, [images], tf.float32, stateful=False,
                               name="niqe")
    scores.set_shape(images.shape[:1])
    return scores


def _niqe_batch_float32(images: np.ndarray) -> np.ndarray:
    return niqe_batch(images).astype(np.float32)


VAL_PHOTOS = ["lomiri_Bridge_by_Sander_Klootwijk", "lomiri_life_by_Aitzol_Berasategi",
              "mate_Aqua", "mate_Storm", "plasma_BytheWater"]
# Not whole 96-pixel patches, so the crop to whole patches is compared too (to 768x672).
CROP_HEIGHT, CROP_WIDTH = 800, 740


def _pillow_imresize(array: np.ndarray, size: float, interp: str = "bilinear",
                     mode: str | None = None) -> np.ndarray:
    """scipy.misc.imresize (removed in SciPy 1.3) for the one call scikit-video makes.

    With mode 'F' it wrapped the array as a Pillow float32 image, resized it to the floor of
    size times each side with Pillow's filter, and returned the float32 pixels.
    """
    if interp != "bicubic" or mode != "F" or not isinstance(size, float):
        raise NotImplementedError(f"imresize(size={size!r}, interp={interp!r}, mode={mode!r})")
    data = np.asarray(array, dtype=np.float32)
    image = Image.frombytes("F", (data.shape[1], data.shape[0]), data.tobytes())
    width, height = (np.array(image.size) * size).astype(int)
    return np.array(image.resize((int(width), int(height)), resample=Image.Resampling.BICUBIC))


@pytest.fixture
def skvideo(monkeypatch: pytest.MonkeyPatch):
    """scikit-video's niqe and rgb2gray, with what NumPy 1.26 and SciPy 1.11 no longer have."""
    pytest.importorskip("skvideo", minversion="1.1.11",
                        reason="scikit-video, the reference NIQE, is not installed "
                               "(pip install scikit-video==1.1.11, a test extra)")
    monkeypatch.setattr(np, "int", int, raising=False)  # alias removed in NumPy 1.24
    monkeypatch.setattr(scipy.misc, "imresize", _pillow_imresize, raising=False)
    # skvideo.measure.niqe is also the name of the function, so fetch the module itself.
    reference = importlib.import_module("skvideo.measure.niqe")
    utils = importlib.import_module("skvideo.utils")
    return reference.niqe, utils.rgb2gray


def _centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    top = (image.shape[0] - height) // 2
    left = (image.shape[1] - width) // 2
    return image[top:top + height, left:left + width]


def _read(path: Path, mode: str = "RGB") -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(mode))


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return _read(buffer)


@pytest.mark.parametrize("name", VAL_PHOTOS)
def test_niqe_matches_scikit_video(name: str, skvideo) -> None:
    reference_niqe, rgb2gray = skvideo
    photo = _read(shared_data("photos/val") / f"{name}.jpg")
    image = _centre_crop(photo, CROP_HEIGHT, CROP_WIDTH)
    expected = float(reference_niqe(rgb2gray(image))[0])
    assert niqe(image) == pytest.approx(expected, rel=0.01)


def test_niqe_of_grey_image_matches_scikit_video(photos: list[Path], skvideo) -> None:
    reference_niqe, _ = skvideo
    grey = _read(photos[0], mode="L")
    assert niqe(grey) == pytest.approx(float(reference_niqe(grey)[0]), rel=0.01)


def test_halving_matches_pillow_bicubic(rng: np.random.Generator) -> None:
    for height, width in [(192, 288), (51, 38), (7, 9)]:
        image = (rng.random((height, width)) * 255).astype(np.float32)
        expected = _pillow_imresize(image, 0.5, interp="bicubic", mode="F")
        halved = niqe_module._downscale_by_2(image)
        assert halved.dtype == np.float32
        np.testing.assert_allclose(halved, expected, rtol=1e-6, atol=1e-4)


def test_niqe_rises_as_jpeg_quality_falls(val768: list[Path]) -> None:
    assert len(val768) == 5
    qualities = (95, 50, 10)
    scores = np.array([[niqe(_jpeg(_read(path), quality)) for quality in qualities]
                       for path in val768])
    mean = scores.mean(axis=0)
    assert mean[1] > mean[0] + 0.5, mean
    assert mean[2] > mean[1] + 2.0, mean
    assert np.all(scores[:, 2] > scores[:, 0] + 1.0), scores


def test_batch_and_tensorflow_versions_agree_with_single_images(photos: list[Path]) -> None:
    images = np.stack([_read(path) for path in photos[:2]])
    singles = [niqe(image) for image in images]
    np.testing.assert_allclose(niqe_batch(images), singles, rtol=1e-12)
    np.testing.assert_allclose(niqe_batch([images[0], images[1, :300, :400]]),
                               [singles[0], niqe(images[1, :300, :400])], rtol=1e-12)

    scores = tf.function(niqe_tf)(tf.constant(images))
    assert scores.dtype == tf.float32 and scores.shape == (2,)
    np.testing.assert_allclose(scores.numpy(), singles, rtol=1e-6)


def test_niqe_rejects_images_below_two_patches_per_side(rng: np.random.Generator) -> None:
    assert MIN_SIZE == 192
    for shape in [(MIN_SIZE - 1, 400, 3), (400, MIN_SIZE - 1), (100, 100, 3)]:
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        with pytest.raises(ValueError, match="at least 192x192 pixels"):
            niqe(image)
    smallest = rng.integers(0, 256, size=(MIN_SIZE, MIN_SIZE, 3), dtype=np.uint8)
    assert np.isfinite(niqe(smallest)) and niqe(smallest) > 0


def test_niqe_rejects_other_dtypes_and_layouts() -> None:
    with pytest.raises(ValueError, match="uint8"):
        niqe(np.zeros((256, 256, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        niqe(np.zeros((256, 256, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch"):
        niqe_batch(np.zeros((256, 256, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        niqe_tf(tf.zeros((1, 256, 256, 3), dtype=tf.float32))


def test_params_are_the_shipped_pristine_model() -> None:
    mean, cov = load_niqe_params()
    shared = scipy.io.loadmat(shared_data("niqe/niqe_image_params.mat"))
    assert mean.shape == (36,) and cov.shape == (36, 36)
    np.testing.assert_array_equal(mean, shared["pop_mu"][0])
    np.testing.assert_array_equal(cov, shared["pop_cov"])
    assert not mean.flags.writeable and not cov.flags.writeable
    # The model repeats the left scale in the diagonal pairs' right-scale slots, as the
    # features do, so the covariance is singular: hence the pseudo-inverse.
    for scale in (0, 18):
        assert mean[scale + 12] == mean[scale + 13] and mean[scale + 16] == mean[scale + 17]
    assert np.linalg.matrix_rank(cov) == 32
    np.testing.assert_array_equal(cov, cov.T)
