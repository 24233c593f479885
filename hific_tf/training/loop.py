"""The training loop around the step (step.py): the two-stage rate–distortion–perception
recipe over a run directory. Checkpoints, TensorBoard summaries, progress lines, resume,
stage-2 initialisation from stage 1, validation, snapshots and a clean stop on SIGTERM/SIGINT
or a non-finite loss.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import STRATEGIES, TrainingConfig
from hific_tf.errors import UserError
from hific_tf.evaluation.metrics import psnr
from hific_tf.progress import format_duration
from hific_tf.storage import zoo
from hific_tf.storage.checkpoints import read_config, write_config
from hific_tf.training.step import PerceptualLoss, TrainingStep

TRAIN_CONFIG_FILE = "train_config.json"
VALIDATION_FILE = "validation.jsonl"
# Metrics that may be infinite in a sound step (PSNR of a perfect reconstruction).
UNBOUNDED_METRICS = frozenset({"psnr"})
SNAPSHOT_FOLDER = "snapshots"  # step-N.npz: the weights at step N, kept to score later

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


class Trainer(TrainingStep):
    """A run directory's training around the step: resume, checkpoints, the loop with its
    signals, validation, snapshots, summaries and progress lines.

    `strategy` defaults to the current one; `hific-tf train` makes the one that the run
    configuration names.
    """

    def __init__(self, config: TrainingConfig, run_dir: str | Path,
                 strategy: tf.distribute.Strategy | None = None,
                 perceptual_loss: PerceptualLoss | None = None) -> None:
        super().__init__(config, strategy, perceptual_loss)
        self.run_dir = Path(run_dir).expanduser()
        self.checkpoint = tf.train.Checkpoint(**self.trackables)
        self.chief = is_chief(self.strategy)
        # Non-chief workers of a multi-worker run save into scratch folders of their own.
        checkpoint_dir = self.run_dir if self.chief else self.run_dir / ".workers" / str(
            self.strategy.cluster_resolver.task_id)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(checkpoint_dir), max_to_keep=config.run.keep_checkpoints)
        self.stop_signal: int | None = None  # the signal that stopped the last fit

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
            self._check_discriminator_state(latest)
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

    def _check_discriminator_state(self, checkpoint: str) -> None:
        """Refuses, in one line, a checkpoint whose D kept the right singular vector [1, out]
        of its spectral norms, as hific-tf did before it kept compare_gan's left one
        [k*k*in, 1] (docs/training.md, "The authors' step"): that D cannot resume."""
        if self.discriminator is None:
            return
        old = [name for name, shape in tf.train.list_variables(checkpoint)
               if name.startswith("discriminator/") and "/u/" in name and shape[0] == 1]
        if old:
            raise UserError(
                f"{self.run_dir} was trained before D's spectral norm kept the authors' vector, "
                f"so its D cannot resume; start the stage again in a new --run_dir with "
                f"--init_from={self.run_dir} (E, G and the hyperprior carry over, D starts "
                "afresh)")

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
