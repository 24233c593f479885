"""Image quality metrics of the paper's protocol, as TensorFlow functions usable on batches.

PSNR and MS-SSIM compare uint8 RGB images; FID and KID compare two sets of Inception pool
features with tensorflow-gan's evaluation functions; `fid256_patches` cuts images into the
paper's FID/256 patches (HIFIC_SPEC.md, "Evaluation protocol").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_gan as tfgan
from tensorflow.python.util import deprecation

FID_PATCH = 256
FID_SHIFT = 128
# tf.image.ssim_multiscale's five scales need sides above (11 - 1) * 2^4 pixels.
MS_SSIM_MIN_SIDE = 161


def psnr(original: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
    """PSNR in dB of uint8 images [..., H, W, C] with peak 255; inf where they are equal."""
    original = tf.cast(original, tf.float64)
    reconstruction = tf.cast(reconstruction, tf.float64)
    mse = tf.reduce_mean(tf.square(original - reconstruction), axis=[-3, -2, -1])
    return 10.0 * tf.math.log(255.0**2 / mse) / tf.math.log(tf.constant(10.0, tf.float64))


def ms_ssim(original: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
    """MS-SSIM (Wang et al. 2003; 11x11 Gaussian, sigma 1.5, five scales) of uint8 RGB
    images [..., H, W, 3], on the [0, 255] scale."""
    height, width = original.shape[-3], original.shape[-2]
    if min(height, width) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIDE} pixels per "
                         f"side, got {height}x{width}")
    return tf.image.ssim_multiscale(tf.cast(original, tf.float32),
                                    tf.cast(reconstruction, tf.float32), max_val=255.0)


def fid_from_features(real: np.ndarray, generated: np.ndarray) -> tf.Tensor:
    """Fréchet distance between Gaussians fitted to two sets of features [N, D], by
    tensorflow-gan.

    With fewer points than dimensions in all (40 FID/256 patches against Inception's 2048
    features), both sets are first written in an orthonormal basis of the space they span
    around their joint mean. FID is unchanged by a translation and a rotation applied to both
    sets, so this is exact (to rounding); it makes tensorflow-gan's two matrix square roots
    N x N instead of 2048 x 2048 (a minute on a 2-core CPU).
    """
    real, generated = np.asarray(real, np.float64), np.asarray(generated, np.float64)
    if len(real) + len(generated) <= real.shape[1]:
        both = np.concatenate([real, generated])
        both -= both.mean(axis=0)
        _, _, basis = np.linalg.svd(both, full_matrices=False)  # rows: orthonormal, span
        coordinates = both @ basis.T
        real, generated = coordinates[:len(real)], coordinates[len(real):]
    return tfgan.eval.frechet_classifier_distance_from_activations(
        tf.constant(real), tf.constant(generated))


def kid_from_features(real: tf.Tensor, generated: tf.Tensor,
                      max_block_size: int = 1024) -> tuple[tf.Tensor, tf.Tensor]:
    """Kernel Inception Distance (unbiased MMD², cubic polynomial kernel) and its std.

    The features are split into blocks of at most `max_block_size`; the block size is
    capped at half the smaller set so that there are at least two blocks, because
    tensorflow-gan's std is NaN for a single block.
    """
    smaller = min(int(real.shape[0]), int(generated.shape[0]))
    block = max(1, min(max_block_size, smaller // 2))
    with deprecation.silence():  # its internal map_fn(back_prop=False) warns on every call
        return tfgan.eval.kernel_classifier_distance_and_std_from_activations(
            tf.cast(real, tf.float64), tf.cast(generated, tf.float64), max_block_size=block)


def fid256_patch_origins(height: int, width: int) -> list[tuple[int, int]]:
    """Top-left corners of the FID/256 patches of an image of this size.

    Non-overlapping 256 x 256 patches from the top-left corner, then a second grid shifted
    by 128 pixels in both directions, only where both sides are at least 384.
    """
    origins = [(top, left) for top in range(0, height - FID_PATCH + 1, FID_PATCH)
               for left in range(0, width - FID_PATCH + 1, FID_PATCH)]
    if min(height, width) >= FID_PATCH + FID_SHIFT:
        origins += [(top, left)
                    for top in range(FID_SHIFT, height - FID_PATCH + 1, FID_PATCH)
                    for left in range(FID_SHIFT, width - FID_PATCH + 1, FID_PATCH)]
    return origins


def fid256_patches(image: np.ndarray) -> np.ndarray:
    """The FID/256 patches of one uint8 [H, W, 3] image, [N, 256, 256, 3]."""
    origins = fid256_patch_origins(image.shape[0], image.shape[1])
    if not origins:
        return np.zeros((0, FID_PATCH, FID_PATCH, image.shape[2]), image.dtype)
    return np.stack([image[top:top + FID_PATCH, left:left + FID_PATCH]
                     for top, left in origins])
