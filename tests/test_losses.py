"""Loss arithmetic and schedules against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.configs import Schedule, TrainingRecipe, training_preset
from hific_tf.training import losses

WARMUP_TARGET = Schedule(values=(0.20 / 0.14, 1.0), boundaries=(50_000,))
WARMUP_WEIGHT = Schedule(values=(0.5, 1.0), boundaries=(50_000,))
LO = dict(target=0.14, lambda_a=2.0, lambda_b=2.0**-6, target_schedule=WARMUP_TARGET,
          weight_schedule=WARMUP_WEIGHT)


def weight(step: int, bpp: float) -> float:
    return float(losses.rate_weight(tf.constant(step, tf.int64), tf.constant(bpp), **LO))


def test_lambda_switches_at_the_target_after_warmup():
    assert weight(60_000, 0.1401) == 2.0
    assert weight(60_000, 0.1399) == 2.0**-6
    assert weight(60_000, 0.14) == 2.0**-6  # "above" is strict


def test_warmup_halves_the_weight_and_raises_the_target_until_50k():
    # During warm-up the target is 0.20, so 0.19 bpp is below it.
    assert weight(0, 0.19) == 0.5 * 2.0**-6
    assert weight(49_999, 0.19) == 0.5 * 2.0**-6
    assert weight(49_999, 0.2001) == 0.5 * 2.0
    assert weight(50_000, 0.19) == 2.0  # warm-up over: 0.19 > 0.14
    target = losses.target_rate(tf.constant(49_999, tf.int64), 0.30, WARMUP_TARGET)
    assert float(target) == pytest.approx(0.30 * 0.20 / 0.14)
    assert float(losses.target_rate(tf.constant(50_000, tf.int64), 0.30,
                                    WARMUP_TARGET)) == pytest.approx(0.30)


def test_learning_rate_drops_tenfold_at_500k():
    def rate(step: int) -> float:
        return float(losses.learning_rate(tf.constant(step, tf.int64), 1e-4,
                                          training_preset("hific-lo").recipe
                                          .learning_rate_schedule))

    assert rate(0) == pytest.approx(1e-4)
    assert rate(499_999) == pytest.approx(1e-4)
    assert rate(500_000) == pytest.approx(1e-5)


def test_schedules_are_values_and_boundaries():
    schedule = Schedule(values=(3.0, 2.0, 1.0), boundaries=(10, 20))
    for step, expected in ((0, 3.0), (9, 3.0), (10, 2.0), (19, 2.0), (20, 1.0), (10**9, 1.0)):
        assert schedule.value_at(step) == expected
        assert float(losses.scheduled(tf.constant(step, tf.int64), schedule)) == expected
    assert float(losses.scheduled(tf.constant(5, tf.int64), Schedule.constant(0.5))) == 0.5
    with pytest.raises(ValueError, match="one value more than boundaries"):
        Schedule(values=(1.0, 2.0))
    with pytest.raises(ValueError, match="increasing steps"):
        Schedule(values=(1.0, 2.0, 3.0), boundaries=(20, 10))


def test_mse_is_on_the_255_scale():
    images = tf.fill([2, 4, 4, 3], 0.5)
    shifted = images + tf.constant([1.0, 2.0])[:, None, None, None] / 255.0
    np.testing.assert_allclose(losses.mse_255(images, shifted).numpy(), [1.0, 4.0], rtol=1e-4)


def test_gan_losses_are_the_non_saturating_forms_without_smoothing():
    real = np.array([[2.0, -1.0]], np.float32).reshape(1, 1, 2, 1)
    fake = np.array([[0.5, -3.0]], np.float32).reshape(1, 1, 2, 1)

    def d(logit):
        return 1 / (1 + math.exp(-logit))

    expected_d = np.mean([-math.log(d(r)) - math.log(1 - d(f))
                          for r, f in zip(real.ravel(), fake.ravel(), strict=True)])
    expected_g = np.mean([-math.log(d(f)) for f in fake.ravel()])
    assert float(losses.discriminator_loss(tf.constant(real), tf.constant(fake))[0]) == \
        pytest.approx(expected_d, rel=1e-6)
    assert float(losses.generator_gan_loss(tf.constant(fake))[0]) == \
        pytest.approx(expected_g, rel=1e-6)


def test_paper_presets_follow_the_spec():
    lo, mi, hi = (training_preset(f"hific-{x}").recipe for x in ("lo", "mi", "hi"))
    assert (lo.target_rate, mi.target_rate, hi.target_rate) == (0.14, 0.30, 0.45)
    assert (lo.lambda_a, mi.lambda_a, hi.lambda_a) == (2.0, 1.0, 0.5)
    assert lo.lambda_b == 2.0**-6
    assert lo.k_m == pytest.approx(0.075 / 32) and lo.k_p == 1.0 and lo.beta == 0.15
    assert (lo.batch_size, lo.crop_size, lo.learning_rate) == (8, 256, 1e-4)
    assert (lo.adam_beta_1, lo.adam_beta_2, lo.adam_epsilon) == (0.9, 0.999, 1e-8)
    assert lo.target_rate_schedule == Schedule((0.20 / 0.14, 1.0), (50_000,))
    assert lo.rate_weight_schedule == Schedule((0.5, 1.0), (50_000,))
    assert lo.learning_rate_schedule == Schedule((1.0, 0.1), (500_000,))
    assert training_preset("mselpips-lo").recipe.stage == "mselpips"
    assert not training_preset("mselpips-lo").recipe.uses_gan and lo.uses_gan


def test_bundled_models_follow_the_papers_losses_and_the_control_only_drops_the_gan():
    """hific-small has the paper's stage 2 (beta 0.15, one D update, k_P = 1); its control
    mselpips-small is stage 1 continued (no D); both start from the same stage 1. The
    intervals study's control (small-hific-control) ran stage 2 with beta 0."""
    gan, control = training_preset("small-hific"), training_preset("small-hific-control")
    assert control.recipe.differences(gan.recipe) == ["beta"]
    assert control.run == gan.run and gan.run.num_steps == 12_000
    assert training_preset("small-mselpips").run.num_steps == 20_000
    stage_one = training_preset("small-mselpips").recipe
    assert stage_one.differences(gan.recipe) == ["stage", "beta"]
    assert not stage_one.uses_gan and gan.recipe.uses_gan
    gan, control = gan.recipe, control.recipe
    assert (gan.beta, control.beta) == (0.15, 0.0)
    assert (gan.discriminator_steps, gan.discriminator_shift) == (1, 0)
    assert (gan.k_p, gan.k_m, gan.learning_rate) == (1.0, 0.075 * 2.0**-5, 1e-4)
    assert (gan.model, gan.target_rate, gan.crop_size) == ("small", 0.24, 128)


def test_resume_check_compares_the_recipe_not_the_run():
    a = training_preset("tiny-hific")
    assert a.recipe.differences(a.replace(num_steps=5, log_every=1).recipe) == []
    assert a.recipe.differences(a.replace(beta=0.3).recipe) == ["beta"]
    with pytest.raises(ValueError, match="crop_size"):
        TrainingRecipe(crop_size=100)


def test_resume_may_move_a_learning_rate_decay_that_has_not_acted_yet():
    def decay_at(step: int) -> TrainingRecipe:
        return training_preset("tiny-hific").replace(
            learning_rate_schedule=Schedule((1.0, 0.1), (step,))).recipe

    before, after = decay_at(900), decay_at(600)
    assert after.differences(before, completed_steps=600) == []
    assert after.differences(before, completed_steps=601) == ["learning_rate_schedule"]
    assert before.differences(after, completed_steps=601) == ["learning_rate_schedule"]
