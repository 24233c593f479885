"""HiFiC's losses and schedules (HIFIC_SPEC.md, "Loss and training").

L_EGP = lambda' * r + k_M * MSE + k_P * LPIPS - beta * log D(x', y_hat)
L_D   = -log(1 - D(x', y_hat)) - log D(x, y_hat)
"""

from __future__ import annotations

import tensorflow as tf

from hific_tf.configs import Schedule


def scheduled(step: tf.Tensor, schedule: Schedule) -> tf.Tensor:
    """The schedule's value at `step`: values[i] from boundaries[i - 1] on."""
    values = tf.constant(schedule.values, tf.float32)
    if not schedule.boundaries:
        return values[0]
    step = tf.reshape(tf.cast(step, tf.int64), [1])
    index = tf.searchsorted(tf.constant(schedule.boundaries, tf.int64), step, side="right")
    return tf.gather(values, index[0])


def target_rate(step: tf.Tensor, target: float, schedule: Schedule) -> tf.Tensor:
    """r_t times the schedule's factor (0.20 / 0.14 during the paper's warm-up)."""
    return target * scheduled(step, schedule)


def rate_weight(step: tf.Tensor, bpp: tf.Tensor, target: float, lambda_a: float,
                lambda_b: float, target_schedule: Schedule, weight_schedule: Schedule
                ) -> tf.Tensor:
    """lambda': lambda(a) when the batch's bpp is above the scheduled target, else
    lambda(b); times the weight schedule's factor (0.5 during the paper's warm-up)."""
    above = bpp > target_rate(step, target, target_schedule)
    return tf.where(above, lambda_a, lambda_b) * scheduled(step, weight_schedule)


def learning_rate(step: tf.Tensor, base: float, schedule: Schedule) -> tf.Tensor:
    """`base` times the schedule's factor (0.1 from the paper's step 500k)."""
    return base * scheduled(step, schedule)


def mse_255(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Per-image mean squared error on the [0, 255] scale of images given in [0, 1]."""
    return tf.reduce_mean(tf.square(255.0 * (images - reconstructions)), axis=[1, 2, 3])


def _per_image_mean(values: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))


def generator_gan_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-image non-saturating generator loss, −log D(x'), averaged over D's patches."""
    return _per_image_mean(tf.nn.softplus(-fake_logits))


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Per-image −log D(x) − log(1 − D(x')), no label smoothing, averaged over patches."""
    return _per_image_mean(tf.nn.softplus(-real_logits) + tf.nn.softplus(fake_logits))
