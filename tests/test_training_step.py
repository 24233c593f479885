"""The training step's parts that make it the authors' (docs/training.md, "The authors'
step"): the scheduled learning rate as applied, one D call per update, h_a optimised in RDFT
coordinates, the bounds at y's scales and at every likelihood, z rounded around its medians
for the rate control; and the step's robustness (a perfect batch, image summaries, D's
update without rates, inference by default)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from hific_tf.coding.hyperprior import LIKELIHOOD_FLOOR, Hyperprior
from hific_tf.coding.model import HiFiC
from hific_tf.configs import Schedule, model_preset, training_preset
from hific_tf.errors import UserError
from hific_tf.nn.layers import SpectralNormConv2D
from hific_tf.training.loop import Trainer
from hific_tf.training.optimizers import irdft_matrix

LEARNING_RATE = 1e-3


def tiny_trainer(tmp_path, preset: str = "tiny-hific", **overrides) -> Trainer:
    settings = dict(crop_size=64, batch_size=2, learning_rate=LEARNING_RATE,
                    learning_rate_schedule=Schedule.step(1.0, 0.1, 5), log_every=1000,
                    summary_every=1, image_every=1000, checkpoint_every=1000)
    settings.update(overrides)
    return Trainer(training_preset(preset).replace(**settings), tmp_path / "run")


def batch_for(trainer: Trainer, seed: int = 0) -> tf.Tensor:
    images = np.random.default_rng(seed).uniform(
        0, 1, [trainer.images_per_step(), 64, 64, 3]).astype(np.float32)
    return tf.constant(images)


def values(variables) -> list[np.ndarray]:
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("step, factor", [(0, 1.0), (10, 0.1)])
def test_every_optimizer_applies_the_scheduled_learning_rate(tmp_path, step, factor):
    """Adam's first update moves each weight by about the learning rate: the rate applied
    after the schedule's boundary is a tenth, for E/G/P and for D, and is the one logged."""
    trainer = tiny_trainer(tmp_path)
    trainer.step.assign(step)
    networks = (trainer.model.encoder, trainer.model.generator, trainer.discriminator)
    before = [values(n.trainable_variables) for n in networks]
    metrics = trainer._replica_step(batch_for(trainer))
    expected = factor * LEARNING_RATE
    for network, old in zip(networks, before, strict=True):
        largest = max(np.max(np.abs(new.numpy() - value))
                      for new, value in zip(network.trainable_variables, old, strict=True))
        assert expected * 0.9 < largest <= expected * 1.01, network.name
    assert float(metrics["learning_rate"]) == pytest.approx(expected)


def test_d_is_called_once_per_update_with_one_power_iteration_per_call(tmp_path,
                                                                       monkeypatch):
    """The authors call D once on concat(real, fake) in D's update and once in the G
    update: two power iterations of each spectral norm per step, not three."""
    trainer = tiny_trainer(tmp_path)
    updates: dict[str, int] = {}
    original = SpectralNormConv2D.normalized_kernel

    def counting(layer, training):
        if training:
            updates[layer.name] = updates.get(layer.name, 0) + 1
        return original(layer, training)

    monkeypatch.setattr(SpectralNormConv2D, "normalized_kernel", counting)
    trainer._replica_step(batch_for(trainer))
    assert len(updates) == 6 and set(updates.values()) == {2}


def test_h_a_is_optimised_in_rdft_coordinates(tmp_path, monkeypatch):
    """The authors train h_a's RDFT coefficients r (kernel k = M r): Adam's first step on r
    is -lr g_r / (|g_r| + eps / sqrt(1 - beta_2)) with g_r = Mᵀ g, taken back as M Δr."""
    trainer = tiny_trainer(tmp_path, learning_rate_schedule=Schedule.constant())
    kernels = [layer.kernel for layer in trainer.model.hyperprior.analysis.layers]
    before = values(kernels)
    gradients = {}
    apply = trainer.generator_optimizer.apply_gradients

    def recording(pairs):
        pairs = list(pairs)
        gradients.update({id(v): g.numpy() for g, v in pairs})
        return apply(pairs)

    monkeypatch.setattr(trainer.generator_optimizer, "apply_gradients", recording)
    trainer._replica_step(batch_for(trainer))
    recipe = trainer.recipe
    damping = recipe.adam_epsilon / math.sqrt(1 - recipe.adam_beta_2)

    def first_adam_step(gradient):
        return -LEARNING_RATE * gradient / (np.abs(gradient) + damping)

    for kernel, old in zip(kernels, before, strict=True):
        shape = [-1, kernel.shape[2] * kernel.shape[3]]
        change = (kernel.numpy() - old).reshape(shape)
        gradient = gradients[id(kernel)].reshape(shape).astype(np.float64)
        basis = irdft_matrix(kernel.shape[:2])
        expected = basis @ first_adam_step(basis.T @ gradient)
        np.testing.assert_allclose(change, expected, atol=2e-3 * LEARNING_RATE)
        # An Adam step on the taps themselves would be another change.
        assert np.abs(change - first_adam_step(gradient)).max() > 0.1 * LEARNING_RATE


@pytest.mark.parametrize("size", [3, 5])
def test_the_inverse_rdft_matrix_is_orthonormal(size):
    basis = irdft_matrix((size, size))
    np.testing.assert_allclose(basis.T @ basis, np.eye(size * size), atol=1e-12)
    # Its first column is the constant kernel.
    np.testing.assert_allclose(basis[:, 0], 1 / size)


@pytest.fixture(scope="module")
def hyperprior() -> Hyperprior:
    tf.keras.utils.set_random_seed(0)
    return HiFiC(model_preset("tiny")).build_weights().hyperprior


@pytest.mark.parametrize("direction, passes", [(-1.0, True), (1.0, False)])
def test_a_scale_below_its_bound_gets_the_gradient_that_raises_it(hyperprior, direction,
                                                                  passes):
    scale = tf.constant([0.05, 0.5])
    with tf.GradientTape() as tape:
        tape.watch(scale)
        index = hyperprior._scale_index(scale)
        loss = direction * tf.reduce_sum(index)
    gradient = tape.gradient(loss, scale).numpy()
    assert index.numpy()[0] == pytest.approx(0.0, abs=1e-5)
    assert (gradient[0] != 0) == passes and gradient[1] != 0


def test_every_likelihood_is_floored_at_1e_9_with_the_gradient_towards(hyperprior):
    channels = hyperprior._latent_channels
    # y + noise in [8.5, 9.5] under N(0, 1) convolved with the noise: likelihoods of 1e-15
    # to 1e-19, below the floor and above float32's underflow.
    far = tf.fill([1, 1, 1, channels], 9.0)
    index = hyperprior._scale_index(tf.ones_like(far))
    with tf.GradientTape() as tape:
        tape.watch(far)
        _, bits = hyperprior.y_model(far, index, loc=tf.zeros_like(far), training=True)
    assert float(bits[0]) == pytest.approx(channels * -math.log2(LIKELIHOOD_FLOOR), rel=1e-5)
    # Below the floor the rate still pulls y towards the mean (the likelihood up).
    assert np.all(tape.gradient(bits, far).numpy() > 0)


def test_the_rate_control_rounds_z_around_the_priors_medians(hyperprior):
    medians = hyperprior.z_medians()
    np.testing.assert_allclose(hyperprior.z_prior.base.cdf(medians), 0.5, atol=1e-5)
    # The range coder's quantization offset is the same median (modulo whole bins), up to
    # the precision of tensorflow-compression's search for it.
    coder_offset = tfc.ContinuousBatchedEntropyModel(
        hyperprior.z_prior, coding_rank=3, compression=False).quantization_offset
    distance = np.mod(medians.numpy() - coder_offset.numpy() + 0.5, 1.0) - 0.5
    np.testing.assert_allclose(distance, 0.0, atol=5e-3)
    y = tf.random.stateless_normal([1, 8, 8, hyperprior._latent_channels], [1, 2]) * 3
    z = hyperprior.analysis(y)
    rounded = tf.floor(z + 0.5 - medians) + medians
    assert not np.allclose(rounded, tf.round(z))  # the medians are not whole numbers
    tf.random.set_seed(7)
    quantized_bits = hyperprior(y, training=True).quantized_bits
    tf.random.set_seed(7)  # the same noise for z, whose h_s gives y's means and scales
    z_tilde, _ = hyperprior.z_model(z, training=True)
    mean, index = hyperprior._mean_and_index(z_tilde, tf.shape(y)[1:3])
    _, y_bits = hyperprior.y_model(y, index, loc=mean, training=False)
    np.testing.assert_allclose(quantized_bits, hyperprior.z_model.quantized_bits(rounded) +
                               y_bits, rtol=1e-6)


def test_a_perfectly_reconstructed_batch_trains_on(tmp_path):
    """MSE 0 makes PSNR infinite: a sound step, not a non-finite loss."""
    trainer = tiny_trainer(tmp_path, "tiny-mselpips", num_steps=3)
    trainer.restore_or_initialize()
    original = trainer.train_step

    def perfect_step(iterator):
        metrics = dict(original(iterator))
        metrics.update(mse=tf.constant(0.0), psnr=tf.constant(math.inf))
        return metrics

    trainer.train_step = perfect_step
    dataset = tf.data.Dataset.from_tensors(batch_for(trainer)).repeat()
    assert trainer.fit(dataset, log=lambda _: None) == 3


def test_image_summaries_show_one_fixed_batch_read_once(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path, "tiny-mselpips", num_steps=3, image_every=1)
    trainer.restore_or_initialize()
    reads = []
    take = tf.data.Dataset.take
    monkeypatch.setattr(tf.data.Dataset, "take",
                        lambda self, count, name=None: reads.append(count) or take(self, count))
    shown = []
    monkeypatch.setattr(trainer, "_image_summary", shown.append)
    dataset = tf.data.Dataset.range(100).map(
        lambda i: tf.fill([2, 64, 64, 3], tf.cast(i, tf.float32) / 100.0)).repeat()
    trainer.fit(dataset, log=lambda _: None)
    assert reads == [1] and len(shown) == 3
    assert all(np.array_equal(image, shown[0]) for image in shown)


def test_image_summaries_run_inside_the_strategy(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    trainer = Trainer(training_preset("tiny-mselpips").replace(crop_size=64, batch_size=2),
                      tmp_path / "run", strategy=strategy)
    images = batch_for(trainer)
    expected = trainer.model(images).reconstruction
    np.testing.assert_allclose(trainer._summary_reconstruction(images), expected, atol=1e-5)


def test_d_update_estimates_no_rate(tmp_path, monkeypatch):
    trainer = tiny_trainer(tmp_path)
    hyperprior = trainer.model.hyperprior
    calls = []
    for model in (hyperprior.y_model, hyperprior.z_model):
        call = type(model).__call__
        monkeypatch.setattr(type(model), "__call__",
                            lambda self, *a, _call=call, **k: calls.append(self) or
                            _call(self, *a, **k))
    half = tf.split(batch_for(trainer), 2)[0]
    trainer._discriminator_update(half)
    assert calls == []


def test_a_run_whose_d_kept_the_old_spectral_norm_vector_is_refused_in_one_line(tmp_path):
    """Before the authors' step, D kept the right singular vector [1, out]: such a run's D
    cannot resume, and the message says how to start the stage again."""
    old = tf.train.Checkpoint(discriminator=tf.train.Checkpoint(
        logits=tf.train.Checkpoint(u=tf.Variable(tf.zeros([1, 1])))))
    tf.train.CheckpointManager(old, str(tmp_path / "run"), max_to_keep=1).save()
    with pytest.raises(UserError, match=r"--init_from=.*run \(E, G and the hyperprior carry "
                                        r"over, D starts afresh\)$"):
        tiny_trainer(tmp_path).restore_or_initialize()


def test_calling_the_model_is_inference_unless_training_is_asked():
    tf.keras.utils.set_random_seed(0)
    model = HiFiC(model_preset("tiny")).build_weights()
    images = tf.random.stateless_uniform([1, 64, 64, 3], [3, 4])
    first, second = model(images), model(images)
    np.testing.assert_array_equal(first.reconstruction, second.reconstruction)
    np.testing.assert_array_equal(first.reconstruction,
                                  model(images, training=False).reconstruction)
    assert not np.array_equal(model(images, training=True).bpp, first.bpp)
