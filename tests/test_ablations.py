"""The ablation switches (docs/ablations.md): E's and G's normalization and D's condition.

Each option builds, trains a step and round-trips a file; every way of loading weights
carries the switches and refuses a mismatch in one line naming the field; the defaults are
the paper's and leave every existing model, file and identifier as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import (
    DISCRIMINATOR_CONDITIONS,
    NORMALIZATIONS,
    ModelConfig,
    TrainingRecipe,
    model_preset,
    training_preset,
)
from hific_tf.errors import UserError
from hific_tf.nn.layers import ChannelNorm, InstanceNorm
from hific_tf.nn.networks import Discriminator
from hific_tf.storage import checkpoints, zoo
from hific_tf.storage.images import read_image
from hific_tf.training.data import training_dataset

from conftest import PHOTOS, REPO, compiled_untiled_decode, run_cli

TINY = model_preset("tiny")
# The keys of a model configuration before the switches: defaults write exactly these.
EARLIER_KEYS = {"discriminator_channels", "discriminator_condition_channels",
                "encoder_channels", "hyper_channels", "hyper_synthesis", "latent_channels",
                "norm_epsilon", "num_scales", "residual_blocks", "scale_max", "scale_min"}


def tiny(**switches: str) -> ModelConfig:
    return dataclasses.replace(TINY, **switches)


def batch_norm_model(seed: int = 0) -> HiFiC:
    """A tiny batch-normalised model with moving statistics unlike their initial 0 and 1."""
    tf.keras.utils.set_random_seed(seed)
    model = HiFiC(tiny(normalization="batch")).build_weights()
    for variable in model.moving_statistics():
        low = 0.5 if "variance" in variable.name else -0.5
        variable.assign(tf.random.uniform(variable.shape, low, low + 1.0))
    return model


def count(module: tf.Module) -> int:
    return sum(int(np.prod(v.shape)) for v in module.trainable_variables)


def test_the_defaults_are_the_papers_and_leave_earlier_files_as_they_were():
    assert (ModelConfig().normalization, ModelConfig().discriminator_condition) == (
        "channel", "latent")
    recipe = TrainingRecipe()
    assert (recipe.normalization, recipe.discriminator_condition) == ("channel", "latent")
    assert NORMALIZATIONS[0] == "channel" and DISCRIMINATOR_CONDITIONS[0] == "latent"
    # The JSON that the model identifier hashes is that of earlier versions, and a file
    # without the switches means the defaults.
    for name in ("hific", "tiny", "small"):
        assert set(json.loads(model_preset(name).to_json())) == EARLIER_KEYS
    written = json.loads(tiny(normalization="batch", discriminator_condition="none").to_json())
    assert set(written) == EARLIER_KEYS | {"normalization", "discriminator_condition"}
    explicit = {**json.loads(TINY.to_json()), "normalization": "channel",
                "discriminator_condition": "latent"}
    assert ModelConfig.from_json(json.dumps(explicit)) == TINY


def test_bundled_weights_load_with_the_defaults():
    for name in zoo.bundled_names():
        config = zoo.load_weights(zoo.bundled_folder() / f"{name}{zoo.SUFFIX}").config
        assert (config.normalization, config.discriminator_condition) == ("channel", "latent")


@pytest.mark.parametrize(("field", "value"), [("normalization", "layer"),
                                              ("discriminator_condition", "image")])
def test_an_unknown_choice_is_one_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be one of .*, got '{value}'$"):
        ModelConfig(**{field: value})
    with pytest.raises(ValueError, match=f"^{field} must be one of"):
        training_preset("tiny-hific").replace(**{field: value})


@pytest.mark.parametrize(("name", "field", "value"), [
    (f"{scale}-{stage}-{norm}norm", "normalization", norm)
    for scale in ("tiny", "small") for stage in ("mselpips", "hific")
    for norm in ("instance", "batch")] + [
    (f"{scale}-hific-unconditional", "discriminator_condition", "none")
    for scale in ("tiny", "small")])
def test_each_ablation_preset_is_its_base_with_one_switch(name, field, value):
    preset = training_preset(name)
    base = training_preset(name.rsplit("-", 1)[0])
    assert preset == base.replace(**{field: value})
    assert getattr(preset.recipe.model_config, field) == value


def test_the_switches_are_training_flags():
    from hific_tf.cli import train

    assert {"normalization", "discriminator_condition"} <= set(train._OVERRIDES)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_every_normalization_has_channel_norms_parameters(normalization):
    """Each keeps a learned scale and offset per channel, so E and G have the paper's
    parameter counts whichever is chosen; batch normalization adds its moving statistics
    (not trained), a mean and a variance per normalised channel."""
    reference = HiFiC(TINY).build_weights()
    model = HiFiC(tiny(normalization=normalization)).build_weights()
    assert count(model.encoder) == count(reference.encoder)
    assert count(model.generator) == count(reference.generator)
    norms = [layer for layer in reference.submodules if isinstance(layer, ChannelNorm)]
    expected = 2 * len(norms) if normalization == "batch" else 0
    assert len(model.moving_statistics()) == expected


def test_an_unconditional_discriminator_sees_the_image_alone():
    image = tf.random.uniform([2, 64, 64, 3], seed=1)
    latent = tf.random.normal([2, 4, 4, TINY.latent_channels], seed=2)
    conditional = Discriminator(TINY)
    conditional((image, latent))
    unconditional = Discriminator(tiny(discriminator_condition="none"))
    logits = unconditional((image, latent))
    assert logits.shape == (2, 8, 8, 1) and unconditional.condition is None
    np.testing.assert_array_equal(unconditional((image, latent * 0.0)).numpy(), logits.numpy())
    # Without the condition's conv and its channels in the first layer's input.
    condition = TINY.discriminator_condition_channels
    first = TINY.discriminator_channels[0]
    assert count(conditional) - count(unconditional) == (
        3 * 3 * TINY.latent_channels * condition + condition + 4 * 4 * condition * first)


def test_instance_norm_matches_a_numpy_reference_and_depends_on_the_whole_image(rng):
    x = rng.normal(size=(2, 6, 5, 4)).astype(np.float32) * 3 + 1
    layer = InstanceNorm(epsilon=1e-3)
    got = layer(tf.constant(x)).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    variance = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(variance + 1e-3), rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(layer(tf.constant(x[:, :3])).numpy(), got[:, :3], atol=1e-3)


def assert_tiles_change_nothing(model: HiFiC, image: np.ndarray) -> bytes:
    data = model.compress(image).numpy()
    decoded = model.decompress(data).numpy()
    assert decoded.shape == image.shape
    for max_tile in (1, 2):
        model.set_memory_budget(64 * 2**20, max_tile)
        try:
            assert model.compress(image).numpy() == data
            np.testing.assert_array_equal(model.decompress(data).numpy(), decoded)
        finally:
            model.set_memory_budget()
    return data


def test_batch_norm_codes_alike_in_tiles_smaller_than_its_halo(rng):
    """At inference batch normalization is a per-channel affine map of stored statistics,
    so tiles change neither the file nor the image."""
    model = batch_norm_model().prepare_for_coding()
    for height, width in ((17, 33), (100, 37)):
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        assert_tiles_change_nothing(model, image)


def test_instance_norm_codes_in_one_tile_and_says_so(rng, caplog):
    tf.keras.utils.set_random_seed(1)
    with caplog.at_level(logging.WARNING):
        model = HiFiC(tiny(normalization="instance")).prepare_for_coding()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["normalization 'instance' depends on the whole image: E and G code each "
                     "image in one tile, whatever the memory budget"]
    model.set_memory_budget(1, 1)  # would cut a photo into tiles of one latent
    rows, columns = tf.constant(32), tf.constant(48)
    assert [int(side) for side in (*model.tiler.encoder_tile(rows, columns),
                                   *model.tiler.generator_tile(rows, columns))] == [32, 48] * 2
    model.set_memory_budget()
    for height, width in ((100, 37), (256, 256)):
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        data = assert_tiles_change_nothing(model, image)
        # One tile is the untiled network on the padded image, both compiled as coding
        # runs: an eager G rounds a few of 256 x 256 pixels a grey level apart.
        untiled = compiled_untiled_decode(model, model.decode_latent(data).y_hat, height,
                                          width)
        np.testing.assert_array_equal(model.decompress(data).numpy(), untiled)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_weights_files_and_checkpoints_carry_the_normalization(tmp_path, rng, normalization):
    tf.keras.utils.set_random_seed(2)
    model = (batch_norm_model() if normalization == "batch"
             else HiFiC(tiny(normalization=normalization)).build_weights())
    model.prepare_for_coding()
    image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    data = model.compress(image).numpy()
    decoded = model.decompress(data).numpy()
    checkpoints.save_model(model, tmp_path / "checkpoint")
    zoo.save_weights(model, tmp_path / "model.npz", float16=False)
    for loaded in (checkpoints.load_for_coding(tmp_path / "checkpoint"),
                   zoo.load_file(tmp_path / "model.npz")):
        assert loaded.config == model.config
        assert loaded.model_id.numpy() == model.model_id.numpy()
        assert loaded.compress(image).numpy() == data
        np.testing.assert_array_equal(loaded.decompress(data).numpy(), decoded)


def test_the_identifier_covers_the_moving_statistics():
    model = batch_norm_model().prepare_for_coding()
    before = model.fingerprint()
    model.moving_statistics()[0].assign_add(tf.ones_like(model.moving_statistics()[0]))
    assert model.fingerprint() != before


def test_weights_without_their_moving_statistics_are_refused(tmp_path):
    model = batch_norm_model()
    zoo.save_weights(model, tmp_path / "batch.npz")
    with np.load(tmp_path / "batch.npz") as stored:
        arrays = dict(stored)
    weights = sorted(key for key in arrays if key.startswith("w"))
    kept = len(weights) - len(model.moving_statistics())
    for key in weights[kept:]:  # the statistics come last
        del arrays[key]
    np.savez(tmp_path / "stripped.npz", **arrays)
    with pytest.raises(UserError) as caught:
        zoo.load_weights(tmp_path / "stripped.npz")
    assert str(caught.value) == (
        f"{tmp_path / 'stripped.npz'} does not match the architecture it declares ({kept} "
        f"weights where normalization 'batch' has {len(weights)}); it is damaged or from "
        "another version of hific-tf")


def test_a_checkpoint_whose_configuration_names_another_normalization_is_refused(tmp_path):
    checkpoints.save_model(batch_norm_model(), tmp_path / "batch")
    tf.keras.utils.set_random_seed(3)
    checkpoints.save_model(HiFiC(TINY).build_weights(), tmp_path / "channel")
    for directory, declared, says in (("batch", "instance", "holds"),
                                      ("channel", "batch", "has no")):
        checkpoints.write_config(tiny(normalization=declared), tmp_path / directory)
        with pytest.raises(UserError) as caught:
            checkpoints.load_model(tmp_path / directory)
        prefix = tf.train.latest_checkpoint(str(tmp_path / directory))
        assert str(caught.value) == (
            f"{prefix} {says} batch normalization statistics, but model_config.json declares "
            f"normalization '{declared}'")


# ------------------------------------------------------------------------------- training

def one_step(preset: str, run_dir, **overrides):
    """A Trainer of `preset` at 64 x 64 crops after one step on the shipped photos."""
    from hific_tf.training.loop import Trainer

    config = training_preset(preset).replace(
        crop_size=64, batch_size=2, num_steps=1, log_every=1000, summary_every=1000,
        image_every=1000, checkpoint_every=1000, **overrides)
    trainer = Trainer(config, run_dir)
    trainer.restore_or_initialize()
    trainer.fit(training_dataset([str(PHOTOS)], trainer.images_per_step(), 64,
                                 seed=config.recipe.seed, cache_decoded=True))
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["tiny-mselpips-instancenorm", "tiny-hific-batchnorm",
                                    "tiny-hific-unconditional"])
def test_each_option_trains_a_step_and_its_run_codes_files(tmp_path, rng, preset):
    trainer = one_step(preset, tmp_path / "run")
    assert int(trainer.step.numpy()) == 1
    statistics = trainer.model.moving_statistics()
    if preset.endswith("batchnorm"):  # the moving statistics moved from their start
        assert statistics and not np.allclose(statistics[0].numpy(), 0.0)
    if preset.endswith("unconditional"):
        assert trainer.discriminator.condition is None
    model = checkpoints.load_for_coding(tmp_path / "run")
    assert model.config == trainer.recipe.model_config
    for mine, theirs in zip(model.moving_statistics(), statistics, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    image = rng.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    data = model.compress(image).numpy()
    assert model.decompress(data).numpy().shape == image.shape


@pytest.mark.slow
def test_starting_from_weights_of_another_normalization_is_refused(tmp_path, tiny_checkpoint):
    from hific_tf.training.loop import Trainer

    trainer = Trainer(training_preset("tiny-mselpips-instancenorm"), tmp_path / "a")
    with pytest.raises(UserError) as caught:
        trainer.restore_or_initialize(init_from=tiny_checkpoint)
    assert str(caught.value) == (
        f"{tiny_checkpoint} holds a different architecture than the recipe's (--model=tiny): "
        "normalization 'channel', not 'instance'")
    with pytest.raises(UserError, match=r"^the model to start from has a different "
                       r"architecture than the recipe's \(--model=tiny\): normalization "
                       r"'batch', not 'instance'$"):
        trainer.restore_or_initialize(init_model=batch_norm_model())
    # D starts fresh, so an unconditional stage 2 starts from any stage 1.
    unconditional = Trainer(training_preset("tiny-hific-unconditional"), tmp_path / "b")
    assert unconditional.restore_or_initialize(init_from=tiny_checkpoint) == 0


@pytest.mark.slow
def test_a_batch_norm_stage_starts_from_a_batch_norm_model_with_its_statistics(tmp_path):
    from hific_tf.training.loop import Trainer

    source = batch_norm_model(seed=4)
    trainer = Trainer(training_preset("tiny-hific-batchnorm"), tmp_path / "run")
    trainer.restore_or_initialize(init_model=source)
    for mine, theirs in zip(trainer.model.moving_statistics(), source.moving_statistics(),
                            strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@pytest.mark.slow
def test_resuming_under_another_switch_is_refused(tmp_path):
    from hific_tf.training.loop import Trainer

    one_step("tiny-mselpips", tmp_path / "run")
    config = training_preset("tiny-mselpips").replace(crop_size=64, batch_size=2,
                                                      normalization="batch")
    with pytest.raises(UserError, match=r"differs in: normalization\);"):
        Trainer(config, tmp_path / "run").restore_or_initialize()


@pytest.mark.slow
def test_the_normalization_flag_refuses_a_bundled_start_of_another_in_one_line(tmp_path):
    zoo.save_weights(HiFiC(TINY).build_weights(), tmp_path / "start.npz")
    result = run_cli("train", "--preset=tiny-mselpips", "--normalization=instance",
                     f"--run_dir={tmp_path / 'run'}", f"--init_from={tmp_path / 'start.npz'}",
                     f"--data={PHOTOS}", "--num_steps=1", "--crop_size=64", "--batch_size=2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == ["hific-tf: error: the model to start from has a different architecture "
                      "than the recipe's (--model=tiny): normalization 'channel', not "
                      "'instance'"]


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["batch", "instance"])
def test_the_saved_model_carries_the_configuration_and_codes_as_the_library(
        tmp_path, rng, caplog, normalization):
    from hific_tf.codec import load_codec
    from hific_tf.storage.export import export_saved_model

    tf.keras.utils.set_random_seed(5)
    model = (batch_norm_model() if normalization == "batch"
             else HiFiC(tiny(normalization=normalization)).build_weights())
    model.prepare_for_coding()
    export_saved_model(model, tmp_path / "saved")
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    assert ModelConfig.from_json(loaded.model_config.numpy().decode()) == model.config
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        codec = load_codec(tmp_path / "saved", memory_budget=2**20)
    whole_image = [r for r in caplog.records if "depends on the whole image" in r.getMessage()]
    assert len(whole_image) == (normalization == "instance")
    image = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    data = codec.compress(image)
    assert data == model.compress(image).numpy()
    np.testing.assert_array_equal(codec.decompress(data), model.decompress(data).numpy())


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["instance", "batch"])
def test_files_decode_alike_across_kernel_libraries_and_thread_counts(tmp_path, normalization):
    """As tests/test_portability.py shows for ChannelNorm: files written with oneDNN off on
    one thread decode with oneDNN on two threads to the same y_hat, and images within one
    grey level (the coding tables are stored, h_s is integer; neither involves E or G)."""
    tf.keras.utils.set_random_seed(6)
    model = (batch_norm_model() if normalization == "batch"
             else HiFiC(tiny(normalization=normalization)).build_weights())
    checkpoints.save_model(model, tmp_path / "model")
    for name, onednn, threads, encode, decode in (("a", False, 1, True, "a_from_a"),
                                                  ("c", True, 2, False, "c_from_a")):
        job = tmp_path / f"{name}.json"
        job.write_text(json.dumps({
            "model": str(tmp_path / "model"), "threads": threads,
            "encode": [[str(PHOTOS), str(tmp_path / "a")]] if encode else [],
            "decode": [[str(tmp_path / "a"), str(tmp_path / decode)]]}))
        result = subprocess.run(
            [sys.executable, str(REPO / "tests" / "portability_worker.py"), str(job)],
            capture_output=True, text=True, timeout=900,
            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
                 "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"})
        assert result.returncode == 0, result.stderr[-2000:]
    stems = sorted(path.stem for path in (tmp_path / "a").glob("*.hfc"))
    assert len(stems) == len(list(PHOTOS.glob("*.png")))
    for stem in stems:
        images = [read_image(tmp_path / folder / f"{stem}.png").astype(int)
                  for folder in ("a_from_a", "c_from_a")]
        assert np.max(np.abs(images[0] - images[1])) <= 1, stem
        np.testing.assert_array_equal(
            *(np.load(tmp_path / folder / f"{stem}.y_hat.npy")
              for folder in ("a_from_a", "c_from_a")))
