"""Training configuration: the recipe and the run, each loadable from JSON, one clear error
for an unknown key, and run directories written before the split still resume."""

from __future__ import annotations

import json

import pytest

from hific_tf.configs import (
    TRAINING_PRESETS,
    ModelConfig,
    Schedule,
    TrainingConfig,
    TrainingRecipe,
    TrainingRun,
    training_preset,
)

from conftest import PHOTOS, run_cli


@pytest.mark.parametrize("name", list(TRAINING_PRESETS))
def test_every_preset_survives_json(name):
    config = training_preset(name)
    assert TrainingConfig.from_json(config.to_json()) == config
    assert TrainingRecipe.from_json(json.dumps(json.loads(config.to_json())["recipe"])) == \
        config.recipe
    assert TrainingRun.from_json(json.dumps(json.loads(config.to_json())["run"])) == config.run


def test_the_run_holds_only_how_a_run_is_operated():
    recipe, run = training_preset("hific-lo").recipe, training_preset("hific-lo").run
    assert {"k_m", "k_p", "beta", "target_rate_schedule", "learning_rate_schedule",
            "adam_beta_1", "crop_size", "discriminator_shift"} <= set(vars(recipe))
    assert set(vars(run)) == {"num_steps", "checkpoint_every", "keep_checkpoints", "log_every",
                              "summary_every", "image_every", "validate_every",
                              "snapshot_every", "strategy", "precision", "jit_compile"}
    assert run.snapshot_every == 0  # weights snapshots only where asked for (train.sh)
    # XLA is off unless asked for (slower on the CPU: benchmarks/results/train_step.json).
    assert not run.jit_compile and not training_preset("small-hific").run.jit_compile
    assert TrainingRun.from_json('{"jit_compile": true}').jit_compile
    assert TrainingRun.from_json("{}") == TrainingRun()  # files from before the field


@pytest.mark.parametrize(("kind", "text", "message"), [
    (TrainingConfig, '{"recipe": {}, "runs": {}}', "unknown training configuration keys: runs"),
    (TrainingConfig, '{"recipe": {"betta": 0.1}}', "unknown training recipe keys: betta"),
    (TrainingConfig, '{"run": {"steps": 5}}', "unknown training run keys: steps"),
    (TrainingConfig, '{"betta": 0.1}', "unknown training configuration keys: betta"),
    (TrainingRecipe, '{"betta": 0.1}', "unknown training recipe keys: betta"),
    (TrainingRun, '{"steps": 5}', "unknown training run keys: steps"),
    (TrainingRecipe, '{"learning_rate_schedule": {"value": [1]}}',
     "unknown schedule keys: value"),
    (TrainingRun, '[1, 2]', "a training run must be a JSON object"),
    (TrainingRun, '{"num_steps": "many"}', "bad training run: "),
    (ModelConfig, '{"latent": 3}', "unknown model config keys: latent"),
])
def test_an_unknown_key_is_one_value_error_naming_it(kind, text, message):
    with pytest.raises(ValueError, match=message):
        kind.from_json(text)


@pytest.mark.parametrize(("fields", "message"), [
    ({"lambda_a": 2.0**-6, "lambda_b": 2.0},
     r"^lambda_a \(the rate weight above target_rate\) must be larger than lambda_b "
     r"\(below it\), got lambda_a 0.015625 <= lambda_b 2.0$"),
    ({"lambda_a": 0.5, "lambda_b": 0.5}, r"^lambda_a .* must be larger than lambda_b"),
    ({"target_rate": 0.0}, r"^target_rate must be positive \(bits per pixel\), got 0.0$"),
    ({"target_rate": -0.1}, r"^target_rate must be positive"),
    ({"stage": "mselpips", "beta": 0.15},
     r"^beta 0.15 would be ignored: stage 'mselpips' has no GAN; set beta=0 or "
     r"stage='hific'$"),
])
def test_a_recipe_that_would_train_against_its_intent_is_refused_naming_the_field(
        fields, message):
    with pytest.raises(ValueError, match=message):
        TrainingRecipe(**fields)
    with pytest.raises(ValueError, match=message):
        training_preset("hific-lo").replace(**fields)


def test_the_rate_weight_above_the_target_is_the_larger():
    # rate_weight (hific_tf/training/losses.py) applies lambda_a when the bpp is above the target.
    for config in TRAINING_PRESETS.values():
        assert config.recipe.lambda_a > config.recipe.lambda_b
        assert config.recipe.uses_gan or config.recipe.beta == 0
    assert TrainingRecipe(stage="mselpips", beta=0.0).beta == 0.0


def test_replace_routes_each_field_and_refuses_unknown_ones():
    config = training_preset("tiny-hific").replace(beta=0.5, num_steps=7)
    assert (config.recipe.beta, config.run.num_steps) == (0.5, 7)
    with pytest.raises(ValueError, match="unknown training configuration keys: steps"):
        config.replace(steps=3)


def test_a_flat_train_config_of_earlier_versions_still_loads():
    flat = {**json.loads(TrainingRecipe(model="tiny", crop_size=64).to_json()),
            **json.loads(TrainingRun(num_steps=9).to_json())}
    for name in ("target_rate_schedule", "rate_weight_schedule", "learning_rate_schedule"):
        del flat[name]
    flat.update(rate_warmup_steps=200, warmup_target_factor=1.5, warmup_weight_factor=0.25,
                learning_rate_decay_step=700, learning_rate_decay_factor=0.5)
    config = TrainingConfig.from_json(json.dumps(flat))
    assert config.recipe.target_rate_schedule == Schedule((1.5, 1.0), (200,))
    assert config.recipe.rate_weight_schedule == Schedule((0.25, 1.0), (200,))
    assert config.recipe.learning_rate_schedule == Schedule((1.0, 0.5), (700,))
    assert (config.recipe.crop_size, config.run.num_steps) == (64, 9)


@pytest.mark.slow
def test_train_reads_recipe_and_run_files_and_names_a_bad_key(tmp_path):
    recipe = json.loads(training_preset("tiny-mselpips").recipe.to_json())
    recipe["bta"] = 0.1
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    result = run_cli("train", "--preset=tiny-mselpips", f"--run_dir={tmp_path / 'run'}",
                     f"--data={PHOTOS}", f"--recipe_file={tmp_path / 'recipe.json'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "unknown training recipe keys: bta" in errors[0]
    result = run_cli("train", "--preset=tiny-mselpips", f"--run_dir={tmp_path / 'run'}",
                     f"--data={PHOTOS}", '--learning_rate_schedule={"values": [1]')
    assert result.returncode == 1 and "a schedule flag is not JSON" in result.stderr
    result = run_cli("train", "--preset=tiny-mselpips", f"--run_dir={tmp_path / 'run'}",
                     f"--data={PHOTOS}", "--beta=0.1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == ["hific-tf: error: bad training configuration: beta 0.1 would be "
                      "ignored: stage 'mselpips' has no GAN; set beta=0 or stage='hific'"]
