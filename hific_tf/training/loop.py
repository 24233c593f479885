"""Training: the two-stage rate–distortion–perception recipe under a tf.distribute strategy.

One tf.function step updates D on one part of the batch, then E, G and the hyperprior on the
other (HIFIC_SPEC.md). Checkpoints, TensorBoard summaries, progress lines, resume, stage-2
initialisation from stage 1 and a clean stop on SIGTERM/SIGINT or a non-finite loss.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import STRATEGIES, TrainingConfig
from hific_tf.errors import UserError
from hific_tf.evaluation.metrics import psnr
from hific_tf.nn.networks import Discriminator
from hific_tf.progress import format_duration
from hific_tf.storage import zoo
from hific_tf.storage.checkpoints import read_config, write_config
from hific_tf.training import losses
from hific_tf.training.optimizers import ScheduledAdam

TRAIN_CONFIG_FILE = "train_config.json"
VALIDATION_FILE = "validation.jsonl"
# Metrics that may be infinite in a sound step (PSNR of a perfect reconstruction).
UNBOUNDED_METRICS = frozenset({"psnr"})
SNAPSHOT_FOLDER = "snapshots"  # step-N.npz: the weights at step N, kept to score later

# (images, reconstructions), both [batch, H, W, 3] in [0, 1] → per-image loss [batch].
PerceptualLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class NonFiniteLossError(UserError):
    """Training produced a NaN or infinite loss."""


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by --strategy."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"unknown --strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that owns the run directory (always, outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (resolver.task_type == "chief" or
            (not has_chief and resolver.task_type == "worker" and resolver.task_id == 0))


class Trainer:
    """Owns the model, D, optimizers, step counter and checkpoints of one run directory.

    `strategy` defaults to the current one; `hific-tf train` makes the one that the run
    configuration names.
    """

    def __init__(self, config: TrainingConfig, run_dir: str | Path,
                 strategy: tf.distribute.Strategy | None = None,
                 perceptual_loss: PerceptualLoss | None = None) -> None:
        recipe = config.recipe
        if recipe.k_p > 0 and perceptual_loss is None:
            raise UserError("k_p > 0 needs an LPIPS loss; pass one or set --k_p=0")
        self.config = config
        self.recipe, self.run = config.recipe, config.run
        self.run_dir = Path(run_dir).expanduser()
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
            trackables = {"model": self.model, "step": self.step,
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
                trackables.update(discriminator=self.discriminator,
                                  discriminator_optimizer=self.discriminator_optimizer)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.chief = is_chief(self.strategy)
        # Non-chief workers of a multi-worker run save into scratch folders of their own.
        checkpoint_dir = self.run_dir if self.chief else self.run_dir / ".workers" / str(
            self.strategy.cluster_resolver.task_id)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(checkpoint_dir), max_to_keep=config.run.keep_checkpoints)
        self.stop_signal: int | None = None  # the signal that stopped the last fit
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

    # ----------------------------------------------------------------- set-up and resume

    def restore_or_initialize(self, init_from: str | Path | None = None,
                              init_model: HiFiC | None = None,
                              with_z_prior: bool = False) -> int:
        """Resumes from the run directory, or starts fresh, optionally from a stage-1 run
        (`init_from`) or from a model in memory (`init_model`: a bundled one, whose z prior
        carries over with `with_z_prior`, or an imported published one).

        Returns the step the run continues from.
        """
        saved_config = self.run_dir / TRAIN_CONFIG_FILE
        latest = tf.train.latest_checkpoint(str(self.run_dir))
        if latest is not None:
            if saved_config.is_file():  # First: another architecture's weights do not restore.
                self._check_resumable(saved_config, int(tf.train.load_variable(
                    latest, "step/.ATTRIBUTES/VARIABLE_VALUE")))
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        elif init_from is not None:
            self._initialize_from_stage_one(Path(init_from).expanduser())
        elif init_model is not None:
            self._initialize_from_model(init_model, with_z_prior)
        if self.chief:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.recipe.model_config, self.run_dir)
            saved_config.write_text(self.config.to_json() + "\n")
        return int(self.step.numpy())

    def _check_resumable(self, saved_config: Path, completed_steps: int) -> None:
        """Refuses to resume under a recipe that differs on the `completed_steps` already
        run, or under another precision (the optimiser state differs)."""
        try:
            previous = TrainingConfig.from_json(saved_config.read_text())
        except ValueError as error:
            raise UserError(f"{saved_config} is not a valid training configuration: "
                            f"{error}") from None
        differences = self.recipe.differences(previous.recipe, completed_steps)
        if differences:
            raise UserError(
                f"{self.run_dir} was trained with a different recipe (differs in: "
                f"{', '.join(differences)}); use a new --run_dir or the same flags")
        if previous.run.precision != self.run.precision:
            raise UserError(f"{self.run_dir} was trained with --precision="
                            f"{previous.run.precision}; resume it with the same precision")

    def _initialize_from_stage_one(self, directory: Path) -> None:
        """E, G and the hyperprior from a stage-1 run; D, optimizers and step stay fresh."""
        differences = self.recipe.model_config.network_differences(read_config(directory))
        if differences:
            raise UserError(f"{directory} holds a different architecture than the recipe's "
                            f"(--model={self.recipe.model}): {'; '.join(differences)}")
        latest = tf.train.latest_checkpoint(str(directory))
        if latest is None:
            raise UserError(f"{directory} has no checkpoint to initialise from")
        status = tf.train.Checkpoint(model=self.model).restore(latest)
        status.expect_partial().assert_existing_objects_matched()

    def _initialize_from_model(self, source: HiFiC, with_z_prior: bool = False) -> None:
        """E, G, h_a and both h_s from `source`, and z's prior if `with_z_prior` (a model
        trained by hific-tf, not an imported one); D, optimizers and step stay fresh."""
        differences = self.recipe.model_config.network_differences(source.config)
        if differences:
            raise UserError(f"the model to start from has a different architecture than the "
                            f"recipe's (--model={self.recipe.model}): {'; '.join(differences)}")
        hyperprior, target = source.hyperprior, self.model.hyperprior
        pairs = [(self.model.encoder, source.encoder),
                 (self.model.generator, source.generator),
                 (target.analysis, hyperprior.analysis),
                 (target.synthesis_mean, hyperprior.synthesis_mean),
                 (target.synthesis_scale, hyperprior.synthesis_scale)]
        if with_z_prior:
            pairs.append((target.z_prior, hyperprior.z_prior))
        for mine, theirs in pairs:
            for variable, value in zip(mine.trainable_variables, theirs.trainable_variables,
                                       strict=True):
                variable.assign(value)
        for variable, value in zip(self.model.moving_statistics(), source.moving_statistics(),
                                   strict=True):
            variable.assign(value)

    # ----------------------------------------------------------------------- the step

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

    # ----------------------------------------------------------------------- the loop

    def _request_stop(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum
        print(f"\nreceived {signal.Signals(signum).name}: saving a checkpoint after this "
              "step", flush=True)

    def save(self) -> str:
        """Writes a checkpoint numbered by the step."""
        return self.manager.save(checkpoint_number=int(self.step.numpy()))

    def write_snapshot(self, step: int) -> Path:
        """The model's weights at `step` as a weights file (float16, with its coding tables,
        as `hific-tf bundle` writes): checkpoints are overwritten as a run goes on, these
        stay, so that a run's learning curve can be scored afterwards on other images."""
        path = self.run_dir / SNAPSHOT_FOLDER / f"step-{step}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        zoo.save_weights(self.model, path, float16=True, overwrite=True)
        return path

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    def _validation_pass(self, photo: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Estimated bits and the uint8 reconstruction of one whole photo."""
        return self.model.reconstruct_photo(photo)

    def validate(self, photos: Sequence[np.ndarray]) -> dict[str, float]:
        """Mean bpp (the model's estimate for the rounded latents), PSNR, NIQE and, with a
        perceptual loss, LPIPS on whole photos, to notice a run that gets worse on images it
        has not seen: blurrier or noisier (PSNR, LPIPS) or less natural-looking (NIQE, what
        the GAN is meant to lower)."""
        from hific_tf.evaluation.perceptual.niqe import niqe

        scores: dict[str, list[float]] = {"bpp": [], "psnr": [], "niqe": []}
        if self.perceptual_loss is not None:
            scores["lpips"] = []
        for photo in photos:
            bits, reconstruction = self._validation_pass(tf.constant(photo))
            scores["bpp"].append(float(bits) / (photo.shape[0] * photo.shape[1]))
            scores["psnr"].append(float(psnr(photo, reconstruction)))
            scores["niqe"].append(niqe(reconstruction.numpy()))
            if self.perceptual_loss is not None:
                pair = [tf.image.convert_image_dtype(image, tf.float32)[tf.newaxis]
                        for image in (tf.constant(photo), reconstruction)]
                scores["lpips"].append(float(self.perceptual_loss(*pair)[0]))
        return {name: float(np.mean(values)) for name, values in scores.items()}

    def _record_validation(self, step: int, photos: Sequence[np.ndarray],
                           log: Callable[[str], None]) -> None:
        result = self.validate(photos)
        lpips = f", LPIPS {result['lpips']:.4f}" if "lpips" in result else ""
        log(f"validation at step {step}: {result['bpp']:.4f} bpp, {result['psnr']:.2f} dB "
            f"PSNR, NIQE {result['niqe']:.2f}{lpips} on {len(photos)} photos")
        if self.chief:
            with self._validation_writer.as_default(step=step):
                for name, value in result.items():
                    tf.summary.scalar(name, value)
            with (self.run_dir / VALIDATION_FILE).open("a") as stream:
                stream.write(json.dumps({"step": step, **result}) + "\n")

    def fit(self, dataset: tf.data.Dataset, log: Callable[[str], None] = print,
            validation_photos: Sequence[np.ndarray] = ()) -> int:
        """Trains until `num_steps`, a stop signal, or a non-finite loss; returns the step.

        `validation_photos` (uint8 RGB) are evaluated every `validate_every` steps and at
        the last; so are weights snapshots written with `snapshot_every`.
        """
        run = self.run
        self.stop_signal = None
        iterator = iter(self.strategy.experimental_distribute_dataset(dataset))
        writer = tf.summary.create_file_writer(
            str(self.run_dir / "train")) if self.chief else tf.summary.create_noop_writer()
        self._validation_writer = tf.summary.create_file_writer(
            str(self.run_dir / "validation")) if self.chief else writer
        previous = {sig: signal.signal(sig, self._request_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        start_step = int(self.step.numpy())
        summary_images = None  # one fixed batch, read at the first image summary
        started = time.monotonic()
        try:
            while int(self.step.numpy()) < run.num_steps and self.stop_signal is None:
                metrics = {k: float(v) for k, v in self.train_step(iterator).items()}
                step = int(self.step.numpy())
                # PSNR is infinite on a batch reconstructed perfectly: not a failure.
                bad = [k for k, v in metrics.items()
                       if not math.isfinite(v) and k not in UNBOUNDED_METRICS]
                if bad:
                    last = self.manager.latest_checkpoint or "none yet"
                    raise NonFiniteLossError(
                        f"non-finite {', '.join(bad)} at step {step}; stopped without saving, "
                        f"the last good checkpoint is {last}; lower --learning_rate or resume")
                with writer.as_default(step=step):
                    if step % run.summary_every == 0:
                        for name, value in metrics.items():
                            tf.summary.scalar(name, value)
                    if step % run.image_every == 0:
                        if summary_images is None:
                            summary_images = next(iter(dataset.take(1)))[
                                : self.recipe.batch_size]
                        self._image_summary(summary_images)
                if step % run.log_every == 0 or step == run.num_steps:
                    log(self._progress_line(step, start_step, started, metrics))
                # The last step too: its checkpoint is the one a run ships.
                last = step == run.num_steps
                if validation_photos and (step % run.validate_every == 0 or last):
                    self._record_validation(step, validation_photos, log)
                if run.snapshot_every and (step % run.snapshot_every == 0 or last) \
                        and self.chief:
                    self.write_snapshot(step)
                if step % run.checkpoint_every == 0:
                    self.save()
            step = int(self.step.numpy())
            if step > start_step and step % run.checkpoint_every:
                self.save()  # the last step, unless the loop has just saved it
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            writer.flush()
            if not self.chief and tf.io.gfile.exists(self.manager.directory):
                tf.io.gfile.rmtree(self.manager.directory)
        return int(self.step.numpy())

    def _progress_line(self, step: int, start_step: int, started: float,
                       metrics: dict[str, float]) -> str:
        elapsed = time.monotonic() - started
        rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
        left = (self.run.num_steps - step) / rate if rate > 0 else float("nan")
        shown = ["bpp_quantized", "loss_egp", "mse", "psnr", "generator_gan", "loss_d"]
        values = "  ".join(f"{k} {metrics[k]:.4g}" for k in shown if k in metrics)
        eta = format_duration(left) if math.isfinite(left) else "?"
        return (f"step {step}/{self.run.num_steps}  {rate:.2f} steps/s  {eta} left  "
                f"{values}")

    @tf.function
    def _summary_reconstruction(self, images: tf.Tensor) -> tf.Tensor:
        """The model's reconstruction of `images`, run by the strategy on its first replica
        (where the variables live under any strategy)."""
        per_replica = self.strategy.run(
            lambda batch: tf.cast(self.model(batch).reconstruction, batch.dtype),
            args=(images,))
        return self.strategy.experimental_local_results(per_replica)[0]

    def _image_summary(self, images: tf.Tensor) -> None:
        # float16/bfloat16 under mixed precision; the summary shows both side by side.
        reconstruction = self._summary_reconstruction(images)
        tf.summary.image("original_reconstruction",
                         tf.clip_by_value(tf.concat([images, reconstruction], axis=2), 0, 1),
                         max_outputs=4)


def environment_summary() -> str:
    """One line on where training runs, for the log."""
    devices = [d.device_type for d in tf.config.list_logical_devices()]
    return f"TensorFlow {tf.__version__} on {', '.join(devices)} ({os.cpu_count()} CPUs)"
