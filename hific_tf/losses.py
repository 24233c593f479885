"""HiFiC's losses and schedules (HIFIC_SPEC.md, "Loss and training").

L_EGP = lambda' * r + k_M * MSE + k_P * LPIPS - beta * log D(x', y_hat)
L_D   = -log(1 - D(x', y_hat)) - log D(x, y_hat)
"""

from __future__ import annotations

import tensorflow as tf


def schedule_active(step: tf.Tensor, boundary: int) -> tf.Tensor:
    """True while `step` is before `boundary` (the warm-up phase of the rate schedules)."""
    return tf.cast(step, tf.int64) < boundary


def target_rate(step: tf.Tensor, target: float, warmup_steps: int,
                warmup_factor: float) -> tf.Tensor:
    """r_t, multiplied by `warmup_factor` (0.20 / 0.14) for the first `warmup_steps`."""
    return tf.where(schedule_active(step, warmup_steps), target * warmup_factor, target)


def rate_weight(step: tf.Tensor, bpp: tf.Tensor, target: float, lambda_a: float,
                lambda_b: float, warmup_steps: int, warmup_target_factor: float,
                warmup_weight_factor: float) -> tf.Tensor:
    """lambda': lambda(a) when the batch's bpp is above the (scheduled) target, else
    lambda(b); multiplied by `warmup_weight_factor` (0.5) for the first `warmup_steps`."""
    above = bpp > target_rate(step, target, warmup_steps, warmup_target_factor)
    weight = tf.where(above, lambda_a, lambda_b)
    return tf.where(schedule_active(step, warmup_steps), weight * warmup_weight_factor, weight)


def learning_rate(step: tf.Tensor, base: float, decay_step: int, decay_factor: float
                  ) -> tf.Tensor:
    """`base`, times `decay_factor` from `decay_step` on."""
    return tf.where(tf.cast(step, tf.int64) < decay_step, base, base * decay_factor)


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
