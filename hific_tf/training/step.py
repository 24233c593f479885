"""One training step: D's updates, then E, G and the hyperprior's, under a tf.distribute
strategy (HIFIC_SPEC.md, "Loss and training"; docs/training.md, "The authors' step").

`TrainingStep` holds what the step changes and the step itself, the part to read for how
HiFiC learns; `loop.Trainer` runs it over a run directory. The losses are called through
their module (`losses.discriminator_loss`), so that tests can record them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import TrainingConfig
from hific_tf.errors import UserError
from hific_tf.nn.networks import Discriminator
from hific_tf.training import losses
from hific_tf.training.optimizers import ScheduledAdam

# (images, reconstructions), both [batch, H, W, 3] in [0, 1] → per-image loss [batch].
PerceptualLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class TrainingStep:
    """The state one training step changes (the model, D, their optimizers, the step
    counter) and the step itself: D's updates, then E, G and the hyperprior's update.

    `strategy` defaults to the current one; `perceptual_loss` is needed when k_P > 0.
    """

    def __init__(self, config: TrainingConfig,
                 strategy: tf.distribute.Strategy | None = None,
                 perceptual_loss: PerceptualLoss | None = None) -> None:
        recipe = config.recipe
        if recipe.k_p > 0 and perceptual_loss is None:
            raise UserError("k_p > 0 needs an LPIPS loss; pass one or set --k_p=0")
        self.config = config
        self.recipe, self.run = config.recipe, config.run
        self.strategy = strategy or tf.distribute.get_strategy()
        self.perceptual_loss = perceptual_loss
        # Process-wide in Keras: the model and D are built under it.
        tf.keras.mixed_precision.set_global_policy(config.run.precision)
        tf.keras.utils.set_random_seed(recipe.seed)
        with self.strategy.scope():
            self.model = HiFiC(recipe.model_config).build_weights()
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            # h_a's kernels train in the authors' RDFT parameterisation (optimizers.py).
            self.generator_optimizer = self._optimizer(
                [layer.kernel for layer in self.model.hyperprior.analysis.layers])
            self.generator_optimizer.build(self.model.trainable_variables)
            self.discriminator = None
            self.discriminator_optimizer = None
            # What a checkpoint of the run holds.
            self.trackables = {"model": self.model, "step": self.step,
                               "generator_optimizer": self.generator_optimizer}
            if recipe.uses_gan:
                self.discriminator = Discriminator(recipe.model_config)
                side = recipe.model_config.pad_multiple
                latent_side = side // recipe.model_config.latent_stride
                self.discriminator((tf.zeros([1, side, side, 3]),
                                    tf.zeros([1, latent_side, latent_side,
                                              recipe.model_config.latent_channels])))
                self.discriminator_optimizer = self._optimizer()
                self.discriminator_optimizer.build(self.discriminator.trainable_variables)
                self.trackables.update(discriminator=self.discriminator,
                                       discriminator_optimizer=self.discriminator_optimizer)
        self._compiled_replica_step = (tf.function(self._replica_step, jit_compile=True)
                                       if config.run.jit_compile else self._replica_step)

    def _optimizer(self, rdft_kernels: Sequence[tf.Variable] = ()
                   ) -> tf.keras.optimizers.Optimizer:
        """Adam at the recipe's learning rate scheduled by the training step (both the E/G/P
        and D updates read the same step, one D update per G update in the recipe)."""
        recipe = self.recipe

        def scheduled_learning_rate() -> tf.Tensor:
            return losses.learning_rate(self.step, recipe.learning_rate,
                                        recipe.learning_rate_schedule)

        optimizer = ScheduledAdam(
            scheduled_learning_rate, rdft_kernels, beta_1=recipe.adam_beta_1,
            beta_2=recipe.adam_beta_2, epsilon=recipe.adam_epsilon)
        if self.run.precision == "mixed_float16":
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        return optimizer

    def _generator_update(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        recipe = self.recipe
        replica = tf.distribute.get_replica_context()
        global_batch = recipe.batch_size
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            reconstruction = tf.cast(outputs.reconstruction, tf.float32)
            batch_bpp = replica.all_reduce(
                "sum", tf.reduce_sum(outputs.quantized_bpp)) / global_batch
            rate_weight = losses.rate_weight(
                self.step, batch_bpp, recipe.target_rate, recipe.lambda_a, recipe.lambda_b,
                recipe.target_rate_schedule, recipe.rate_weight_schedule)
            mse = losses.mse_255(images, reconstruction)
            per_image = rate_weight * outputs.bpp + recipe.k_m * mse
            metrics = {"bpp_noisy": outputs.bpp, "bpp_quantized": outputs.quantized_bpp,
                       "mse": mse, "psnr": 10.0 * tf.math.log(255.0**2 / mse) / math.log(10.0)}
            if recipe.k_p > 0:
                perceptual = self.perceptual_loss(images, reconstruction)
                per_image += recipe.k_p * perceptual
                metrics["lpips"] = perceptual
            if recipe.uses_gan:
                fake_logits = self.discriminator(
                    (reconstruction, outputs.y_hat), training=True,
                    max_shift=recipe.discriminator_shift)
                gan = losses.generator_gan_loss(tf.cast(fake_logits, tf.float32))
                per_image += recipe.beta * gan
                metrics["generator_gan"] = gan
            loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            scaled = self._scale(self.generator_optimizer, loss)
        variables = self.model.trainable_variables
        gradients = self._unscale(self.generator_optimizer,
                                  tape.gradient(scaled, variables))
        self.generator_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        metrics = {name: tf.reduce_mean(value) for name, value in metrics.items()}
        metrics.update(loss_egp=loss * replica.num_replicas_in_sync, rate_weight=rate_weight,
                       learning_rate=self.generator_optimizer.learning_rate)
        return metrics

    def _discriminator_update(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """One D update: D called once on the real and the fake images together, as the
        authors call it, so that both halves share one power iteration of the spectral
        norm; the fakes come from a pass without rate estimation."""
        reconstruction, latent = self.model.reconstruct_for_discriminator(images)
        reconstruction = tf.stop_gradient(tf.cast(reconstruction, tf.float32))
        latent = tf.stop_gradient(latent)
        with tf.GradientTape() as tape:
            logits = self.discriminator(
                (tf.concat([images, reconstruction], 0), tf.concat([latent, latent], 0)),
                training=True, max_shift=self.recipe.discriminator_shift)
            real, fake = tf.split(tf.cast(logits, tf.float32), 2)
            loss = tf.nn.compute_average_loss(losses.discriminator_loss(real, fake),
                                              global_batch_size=self.recipe.batch_size)
            scaled = self._scale(self.discriminator_optimizer, loss)
        variables = self.discriminator.trainable_variables
        gradients = self._unscale(self.discriminator_optimizer,
                                  tape.gradient(scaled, variables))
        self.discriminator_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return {"loss_d": loss * replicas,
                "d_real": tf.reduce_mean(tf.sigmoid(real)),
                "d_fake": tf.reduce_mean(tf.sigmoid(fake))}

    @staticmethod
    def _scale(optimizer: tf.keras.optimizers.Optimizer, loss: tf.Tensor) -> tf.Tensor:
        if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            return optimizer.get_scaled_loss(loss)
        return loss

    @staticmethod
    def _unscale(optimizer: tf.keras.optimizers.Optimizer,
                 gradients: list[tf.Tensor]) -> list[tf.Tensor]:
        if isinstance(optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            return optimizer.get_unscaled_gradients(gradients)
        return gradients

    def _replica_step(self, batch: tf.Tensor) -> dict[str, tf.Tensor]:
        metrics = {}
        if self.recipe.uses_gan:
            parts = tf.split(batch, self.recipe.discriminator_steps + 1)
            for part in parts[:-1]:
                metrics.update(self._discriminator_update(part))
            batch = parts[-1]
        metrics.update(self._generator_update(batch))
        return metrics

    @tf.function
    def train_step(self, iterator: Iterator) -> dict[str, tf.Tensor]:
        """One training step on the next batch of `iterator`; returns mean metrics."""
        per_replica = self.strategy.run(self._compiled_replica_step, args=(next(iterator),))
        self.step.assign_add(1)
        return {name: self.strategy.reduce("mean", value, axis=None)
                for name, value in per_replica.items()}

    def images_per_step(self) -> int:
        """Global batch the data pipeline must deliver: one part for each update."""
        parts = self.recipe.discriminator_steps + 1 if self.recipe.uses_gan else 1
        return parts * self.recipe.batch_size
