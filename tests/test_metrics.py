"""Each metric against an independent NumPy/SciPy computation of its formula."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.linalg
import scipy.signal
import tensorflow as tf
import tensorflow_gan as tfgan

from hific_tf.evaluation import metrics

from conftest import REPO

SPEC = importlib.util.spec_from_file_location(
    "intervals", REPO / "experiments" / "paper_claim_small" / "intervals.py")
intervals = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(intervals)


def test_psnr_matches_the_formula(rng):
    a = rng.integers(0, 256, size=(3, 20, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-9, 10, size=a.shape), 0, 255).astype(np.uint8)
    mse = ((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(metrics.psnr(a, b).numpy(), 10 * np.log10(255**2 / mse),
                               rtol=1e-12)
    assert np.isinf(metrics.psnr(a, a).numpy()).all()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def _ssim_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean luminance·contrast·structure and mean contrast·structure, per the paper."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()
    ssim_values, cs_values = [], []
    for channel in range(x.shape[-1]):
        a, b = x[..., channel], y[..., channel]

        def f(z):
            return scipy.signal.convolve2d(z, window, mode="valid")

        mu_a, mu_b = f(a), f(b)
        var_a = f(a * a) - mu_a**2
        var_b = f(b * b) - mu_b**2
        cov = f(a * b) - mu_a * mu_b
        cs = (2 * cov + c2) / (var_a + var_b + c2)
        luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        ssim_values.append((luminance * cs).mean())
        cs_values.append(cs.mean())
    return float(np.mean(ssim_values)), float(np.mean(cs_values))


def _downsample(z: np.ndarray) -> np.ndarray:
    h, w = z.shape[:2]
    z = np.pad(z, ((0, h % 2), (0, w % 2), (0, 0)), mode="symmetric")
    return 0.25 * (z[0::2, 0::2] + z[1::2, 0::2] + z[0::2, 1::2] + z[1::2, 1::2])


def _ms_ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    x, y = x.astype(np.float64), y.astype(np.float64)
    value = 1.0
    for scale, weight in enumerate(weights):
        ssim, cs = _ssim_parts(x, y)
        value *= max(ssim if scale == len(weights) - 1 else cs, 0.0) ** weight
        x, y = _downsample(x), _downsample(y)
    return value


def test_ms_ssim_matches_the_formula(photos):
    from hific_tf.storage.images import read_image

    photo = read_image(photos[0])[:200, :301]
    rng = np.random.default_rng(3)
    noisy = np.clip(photo + rng.normal(0, 12, photo.shape), 0, 255).astype(np.uint8)
    got = float(metrics.ms_ssim(photo[None], noisy[None]).numpy()[0])
    assert got == pytest.approx(_ms_ssim_reference(photo, noisy), rel=1e-4)
    assert float(metrics.ms_ssim(photo, photo)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 161"):
        metrics.ms_ssim(photo[:100], photo[:100])


def test_fid_matches_the_gaussian_closed_form(rng):
    real = rng.normal(0, 1, size=(400, 8)) @ rng.normal(0, 1, size=(8, 8))
    fake = rng.normal(0.3, 1.2, size=(300, 8)) @ rng.normal(0, 1, size=(8, 8))
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_r @ cov_f).real
    expected = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * root)
    assert float(metrics.fid_from_features(real, fake)) == pytest.approx(expected, rel=1e-6)
    assert abs(float(metrics.fid_from_features(real, real))) < 1e-6


def test_fid_with_fewer_points_than_dimensions_is_tensorflow_gans_fid(rng):
    # Fewer points than dimensions: fid_from_features rotates both sets into the space they
    # span first; tensorflow-gan on the full 300-dimensional features must agree.
    real = rng.normal(0, 1, size=(40, 300)) @ rng.normal(0, 1, size=(300, 300))
    fake = rng.normal(0.1, 1.1, size=(30, 300)) @ rng.normal(0, 1, size=(300, 300))
    direct = tfgan.eval.frechet_classifier_distance_from_activations(tf.constant(real),
                                                                     tf.constant(fake))
    assert float(metrics.fid_from_features(real, fake)) == pytest.approx(float(direct),
                                                                         rel=1e-8)


def test_fid_through_few_points_matches_tensorflow_gan(rng):
    real = rng.normal(0, 1, size=(40, 300)) @ rng.normal(0, 1, size=(300, 300))
    fake = rng.normal(0.1, 1.1, size=(30, 300)) @ rng.normal(0, 1, size=(300, 300))
    direct = tfgan.eval.frechet_classifier_distance_from_activations(tf.constant(real),
                                                                     tf.constant(fake))
    assert intervals.fid_few_points(real, fake) == pytest.approx(float(direct), rel=1e-8)


def test_kid_matches_an_unbiased_polynomial_mmd(rng):
    real = rng.normal(0, 1, size=(64, 16))
    fake = rng.normal(0.2, 1.1, size=(64, 16))
    # At most half the set per block, so two contiguous blocks of 32: KID is the mean of
    # their unbiased MMD² estimates and its std the standard error over the blocks.
    kid, std = metrics.kid_from_features(real, fake)
    estimates = [intervals.kid_one_block(real[i:i + 32], fake[i:i + 32]) for i in (0, 32)]
    assert float(kid) == pytest.approx(np.mean(estimates), rel=1e-9)
    assert float(std) == pytest.approx(np.std(estimates, ddof=1) / np.sqrt(2), rel=1e-9)


@pytest.mark.parametrize("height,width,count", [
    (256, 256, 1),                      # one patch, no shifted grid (sides below 384)
    (383, 1000, 3),                     # 1 x 3, shorter side below 384: no shift
    (384, 384, 1 + 1),                  # 1 x 1, plus the shifted (128, 128) patch
    (512, 768, 2 * 3 + 1 * 2),          # Kodak-sized: 6 + 2
    (1600, 2560, 6 * 10 + 5 * 9),       # 2560x1600: 60 + 45
    (255, 4000, 0),                     # too small for any patch
])
def test_fid256_patch_counts_follow_the_rule(height, width, count):
    origins = metrics.fid256_patch_origins(height, width)
    assert len(origins) == count
    assert all(top + 256 <= height and left + 256 <= width for top, left in origins)
    image = np.zeros((height, width, 3), np.uint8)
    assert metrics.fid256_patches(image).shape == (count, 256, 256, 3)


def test_fid256_patches_are_the_right_pixels(rng):
    image = rng.integers(0, 256, size=(512, 640, 3), dtype=np.uint8)
    patches = metrics.fid256_patches(image)
    # 512 x 640: a 2 x 2 grid from the corner, then the grid shifted by 128 fits 1 x 2.
    corners = [(0, 0), (0, 256), (256, 0), (256, 256), (128, 128), (128, 384)]
    assert patches.shape == (len(corners), 256, 256, 3)
    for patch, (top, left) in zip(patches, corners, strict=True):
        np.testing.assert_array_equal(patch, image[top:top + 256, left:left + 256])
