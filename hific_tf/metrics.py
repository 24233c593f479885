"""Image quality metrics on uint8 RGB, as TensorFlow functions usable on batches."""

from __future__ import annotations

import tensorflow as tf


def psnr(original: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
    """PSNR in dB of uint8 images [..., H, W, C] with peak 255; inf where they are equal."""
    original = tf.cast(original, tf.float64)
    reconstruction = tf.cast(reconstruction, tf.float64)
    mse = tf.reduce_mean(tf.square(original - reconstruction), axis=[-3, -2, -1])
    return 10.0 * tf.math.log(255.0**2 / mse) / tf.math.log(tf.constant(10.0, tf.float64))
