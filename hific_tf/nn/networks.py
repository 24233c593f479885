"""The paper's encoder E, generator G and conditional discriminator D (HIFIC_SPEC.md)."""

from __future__ import annotations

import tensorflow as tf

from hific_tf.configs import ModelConfig
from hific_tf.nn.layers import (
    Chain,
    PhaseConv2DTranspose,
    ResidualBlock,
    SpectralNormConv2D,
    conv,
    normalization,
)


class Encoder(Chain):
    """E: image in [0, 1] → latent y at H/16 x W/16 with C_y channels."""

    def __init__(self, config: ModelConfig, name: str = "encoder") -> None:
        first, *downsampling = config.encoder_channels
        norm, eps = config.normalization, config.norm_epsilon
        layers = [conv(first, 7), normalization(norm, eps), tf.keras.layers.ReLU()]
        for width in downsampling:
            layers += [conv(width, 3, strides=2), normalization(norm, eps),
                       tf.keras.layers.ReLU()]
        layers.append(conv(config.latent_channels, 3))
        super().__init__(layers, name=name)


class Generator(tf.keras.Model):
    """G: quantised latent y_hat → image (linear output, nominally in [0, 1])."""

    def __init__(self, config: ModelConfig, name: str = "generator") -> None:
        super().__init__(name=name)
        head_width, *upsampling = config.generator_channels
        norm, eps = config.normalization, config.norm_epsilon
        self.head = Chain(
            [normalization(norm, eps), conv(head_width, 3), normalization(norm, eps)],
            name="head")
        self.residual_blocks = [ResidualBlock(head_width, norm, eps, name=f"residual_{i}")
                                for i in range(config.residual_blocks)]
        upsampling_layers = []
        for width in upsampling:
            upsampling_layers += [PhaseConv2DTranspose(width), normalization(norm, eps),
                                  tf.keras.layers.ReLU()]
        upsampling_layers.append(conv(3, 7))
        self.tail = Chain(upsampling_layers, name="tail")

    def call(self, latent: tf.Tensor) -> tf.Tensor:
        return self.tail(self.body(latent))

    def body(self, latent: tf.Tensor) -> tf.Tensor:
        """The head and residual blocks with their skip: G at the latent resolution."""
        head = self.head(latent)
        hidden = head
        for block in self.residual_blocks:
            hidden = block(hidden)
        return head + hidden


class Discriminator(tf.keras.Model):
    """D: (image in [0, 1], y_hat) → one logit per patch at H/8 x W/8.

    The latent is a stop-gradient condition: conv 3x3 → LeakyReLU → nearest upsampling to
    the image size, concatenated with the image; with ModelConfig.discriminator_condition
    "none", D ignores it and sees the image alone.
    """

    def __init__(self, config: ModelConfig, name: str = "discriminator") -> None:
        super().__init__(name=name)
        self.latent_stride = config.latent_stride
        self.condition = (SpectralNormConv2D(config.discriminator_condition_channels, 3)
                          if config.discriminator_condition == "latent" else None)
        self.body = [
            SpectralNormConv2D(width, 4, stride)
            for width, stride in zip(config.discriminator_channels, (2, 2, 2, 1), strict=True)
        ]
        self.logits = SpectralNormConv2D(1, 4)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False,
             max_shift: int = 0) -> tf.Tensor:
        """Logits for (image, latent); `max_shift` > 0 first rolls each image together with
        its upsampled condition by a random 0..max_shift-1 pixels down and right (a training
        augmentation, not the paper's: see TrainingConfig.discriminator_shift)."""
        image, latent = inputs
        hidden = image
        if self.condition is not None:
            condition = self.condition(tf.stop_gradient(latent), training=training)
            condition = tf.nn.leaky_relu(condition, 0.2)
            condition = tf.repeat(tf.repeat(condition, self.latent_stride, axis=1),
                                  self.latent_stride, axis=2)
            hidden = tf.concat([image, condition], axis=-1)
        if max_shift > 0:
            hidden = random_roll(hidden, max_shift)
        for layer in self.body:
            hidden = tf.nn.leaky_relu(layer(hidden, training=training), 0.2)
        return self.logits(hidden, training=training)


def random_roll(images: tf.Tensor, max_shift: int) -> tf.Tensor:
    """Rolls each image of a [B, H, W, C] batch circularly by its own random shift of
    0..max_shift-1 rows and columns; differentiable, so G's gradient passes through it."""
    batch, height, width = tf.unstack(tf.shape(images)[:3])
    shifts = tf.random.uniform([2, batch, 1], 0, max_shift, dtype=tf.int32)
    rows = tf.math.floormod(tf.range(height)[tf.newaxis] - shifts[0], height)
    columns = tf.math.floormod(tf.range(width)[tf.newaxis] - shifts[1], width)
    images = tf.gather(images, rows, axis=1, batch_dims=1)
    return tf.gather(images, columns, axis=2, batch_dims=1)
