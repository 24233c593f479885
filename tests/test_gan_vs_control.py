"""experiments/gan_vs_control: the GAN-minus-control intervals, the declared aim, and the
balance read from the training summaries."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO


def load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"gan_vs_control_{name}", REPO / "experiments" / "gan_vs_control" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = load("compare")
curves = load("curves")


def fake_run(rng: np.random.Generator, shift: float, photos: int = 12) -> dict:
    run = {name: rng.uniform(0.1, 1.0, photos) for name in compare.PER_PHOTO}
    run["niqe"] = run["niqe"] + shift
    run["features"] = rng.normal(shift, 1.0, [photos, 4, 16])
    return run


def test_identical_runs_differ_by_nothing(rng):
    run = fake_run(rng, 0.0)
    real = rng.normal(0.0, 1.0, [12, 4, 16])
    result = compare.compare(real, run, run, resamples=50, rng=np.random.default_rng(1))
    for name, row in result.items():
        assert row["difference"] == pytest.approx(0.0, abs=1e-9), name
        assert row["low"] == pytest.approx(0.0, abs=1e-9), name
        assert row["high"] == pytest.approx(0.0, abs=1e-9), name


def test_a_gan_that_is_clearly_better_meets_the_aim(rng):
    real = rng.normal(0.0, 1.0, [12, 4, 16])
    control = fake_run(rng, 3.0)  # NIQE 3 higher, features far from the originals'
    gan = {**fake_run(rng, 0.0), "bpp": control["bpp"] * 1.02}
    result = compare.compare(real, gan, control, resamples=200, rng=np.random.default_rng(2))
    assert result["bpp"]["difference"] == pytest.approx(0.02)
    assert result["niqe"]["high"] < 0 and result["fid"]["high"] < 0
    assert result["kid"]["high"] < 0
    checks = compare.aim(result)
    assert checks == {"niqe_lower": True, "fid_lower": True, "kid_lower": True,
                      "rate_within_5_percent": True, "holds": True}
    assert "the GAN helps" in compare.sentence(result, checks)
    # The same GAN at 6 % more bits misses the aim, and the sentence says so.
    result["bpp"]["difference"] = 0.06
    checks = compare.aim(result)
    assert not checks["holds"] and "does not help" in compare.sentence(result, checks)


def test_balance_is_the_mean_over_the_window_up_to_the_step():
    scalars = {"d_real": [(step, float(step)) for step in range(50, 2001, 50)],
               "d_fake": [(2000, 0.25)]}
    balance = curves.balance_at(scalars, 2000)
    window = [step for step in range(50, 2001, 50) if step > 2000 - curves.WINDOW]
    assert float(balance["d_real"]) == pytest.approx(np.mean(window))
    assert float(balance["d_fake"]) == 0.25
    assert balance["generator_gan"] == ""


def test_training_scalars_are_read_from_the_summaries_with_the_carried_offset(tmp_path):
    run = tmp_path / "gan"
    (run / "step_offset").parent.mkdir()
    (run / "step_offset").write_text("400\n")
    writer = tf.summary.create_file_writer(str(run / "train"))
    with writer.as_default():
        for step in (50, 100):
            tf.summary.scalar("d_real", 0.5 + step / 1000, step=step)
    writer.flush()
    scalars = curves.training_scalars(run)
    assert [step for step, _ in scalars["d_real"]] == [450, 500]
    assert scalars["d_real"][1][1] == pytest.approx(0.6)

