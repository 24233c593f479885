"""One training step against the authors' own (../shared/data/authors_training_step).

The data holds one whole step of the authors' HiFiC code (tensorflow/compression's
models/hific with tensorflow-compression 1.3 and compare_gan) at tiny widths, from fixed
weights, batches and uniform-noise arrays, at global steps 1 000, 50 000 and 600 000, with
the bounds at y's scales and likelihoods inactive ("safe") and active ("natural"). The
project's step runs from the same weights, batches and noise, and every loss term, D's
logits, every gradient, every post-step weight and D's spectral-norm vector is compared
within the data's README tolerances (docs/training.md, "The authors' step").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_compression.python.ops import math_ops as tfc_math_ops

from hific_tf import configs
from hific_tf.coding.hyperprior import Hyperprior
from hific_tf.training import loop, losses

from conftest import shared_data

CASES = [f"{regime}-{step}" for regime in ("safe", "natural")
         for step in (1000, 50000, 600000)]
# ||project - authors|| <= rel * ||authors|| + abs * sqrt(size), by kind (the README's).
TOLERANCES = {"loss": (1e-4, 0.0), "logits": (1e-4, 0.0), "gradient": (1e-4, 1e-10),
              "update": (1e-3, 0.0), "u": (1e-4, 0.0)}
# The order in which the project draws its training noise: the D update perturbs z only (it
# estimates no rate), then the E/G/P update z and y.
NOISE_ORDER = ("D_z", "G_z", "G_y")
PRIOR = "z entropy model (factorized prior)"
D_LAYERS = ("latent", "d_conv_head", "d_conv_0", "d_conv_1", "d_conv_a", "d_conv_b")


class Fixture:
    """One case of the authors' step, read as the data's README says (numpy only)."""

    def __init__(self, folder: Path, case: str) -> None:
        self.index = json.loads((folder / "index.json").read_text())
        entry = self.index["cases"][case]
        self.entry = entry
        self.step = entry["global_step"]
        self.files = {name: np.load(folder / name) for name in self.index["files"]}
        self.where = {name: other for other, names in entry["arrays_in_other_files"].items()
                      for name in names}
        self.summary_only = set(entry["summary_only"])

    def __contains__(self, name: str) -> bool:
        return name in self.index["array_info"]

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self.summary_only:
            raise KeyError(f"{name} is stored as a summary only")
        return self.files[self.where.get(name, self.entry["file"])][name]

    def summary(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """[L2 norm, sum, max |x|] and the values at the README's 32 sampled positions."""
        stored = self.files[self.entry["file"]]
        return stored[name + "@stats"], stored[name + "@sample"]

    def variables(self, network: str) -> list[str]:
        """The authors' variable names of `network`, in the order of their graph."""
        named = [(v["position"], name) for name, v in self.index["variables"].items()
                 if v["network"] == network]
        return [name for _, name in sorted(named)]


def relative_error(expected: np.ndarray, actual: np.ndarray) -> float:
    expected, actual = (np.asarray(x, np.float64).ravel() for x in (expected, actual))
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-300))


class Comparison:
    """Collects every compared quantity; fails listing all those outside tolerance."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0

    def check(self, kind: str, name: str, expected: np.ndarray, actual: np.ndarray,
              resolution: np.ndarray | None = None) -> None:
        """`resolution`: per element, the smallest change the stored value can show (half
        a float32 spacing of a weight), added to the tolerance as an L2 norm."""
        expected, actual = (np.asarray(x, np.float64).ravel() for x in (expected, actual))
        assert expected.shape == actual.shape, (name, expected.shape, actual.shape)
        rel, abs_ = TOLERANCES[kind]
        floor = 0.0 if resolution is None else np.linalg.norm(resolution)
        self.count += 1
        error = np.linalg.norm(actual - expected)
        if not error <= rel * np.linalg.norm(expected) + abs_ * np.sqrt(expected.size) + floor:
            self.failures.append(f"{kind} {name}: relative error "
                                 f"{relative_error(expected, actual):.2e} (tolerance {rel:g})")

    def check_array(self, fixture: Fixture, kind: str, name: str, actual: np.ndarray,
                    resolution: np.ndarray | None = None) -> None:
        """An array stored whole, or through its norm, sum, largest magnitude and samples."""
        if name not in fixture.summary_only:
            self.check(kind, name, fixture[name], actual, resolution)
            return
        stats, sample = fixture.summary(name)
        flat = np.asarray(actual, np.float64).ravel()
        positions = np.unique(np.round(np.linspace(0, flat.size - 1, min(flat.size, 32)))
                              ).astype(int)
        flat_resolution = None if resolution is None else np.ravel(resolution)
        self.check(kind, f"{name} (L2 norm)", stats[:1], [np.linalg.norm(flat)],
                   flat_resolution)
        self.check(kind, f"{name} (sampled)", sample, flat[positions],
                   None if resolution is None else flat_resolution[positions])


class NoiseSource:
    """Stands in for tensorflow-compression's `tf` while the step runs: its uniform draws
    return the stored noise arrays in NOISE_ORDER, checked by shape and range."""

    def __init__(self, real_tf, arrays: dict[str, np.ndarray]) -> None:
        self._real, self._queue, self.drawn = real_tf, [(k, arrays[k]) for k in NOISE_ORDER], []
        source = self

        class Random:
            def __getattr__(self, name: str):
                return getattr(real_tf.random, name)

            def uniform(self, shape, minval=0.0, maxval=None, dtype=None, **_):
                role, array = source._queue.pop(0)
                source.drawn.append(role)
                assert tuple(real_tf.get_static_value(shape)) == array.shape, role
                assert (minval, maxval) == (-0.5, 0.5), role
                return real_tf.constant(array, dtype=dtype)

        self.random = Random()

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def tiny_config(widths: dict) -> configs.ModelConfig:
    return configs.ModelConfig(
        latent_channels=widths["latent"], encoder_channels=tuple(widths["channels"]),
        residual_blocks=widths["residual_blocks"], hyper_channels=widths["hyperprior"],
        discriminator_condition_channels=12,
        discriminator_channels=tuple(widths["discriminator"]))


def variable_map(trainer: loop.Trainer, fixture: Fixture
                 ) -> list[tuple[tf.Variable, str, Callable[[np.ndarray], np.ndarray]]]:
    """(project variable, authors' name, layout map) for every trainable variable.

    The maps are involutions: Keras layouts as they are; tensorflow-compression 1.x's
    upsampling kernels [k, k, in, out] transposed to Keras' [k, k, out, in]; its stride-1
    synthesis kernels flipped (it convolves where Keras correlates). h_a is compared through
    its spatial kernel, `initial_effective_kernel/`.
    """
    model, discriminator = trainer.model, trainer.discriminator
    same = np.asarray

    def pairs(layers: list, network: str) -> list:
        names = iter(fixture.variables(network))
        result = []
        for layer in layers:
            for variable in layer.trainable_variables:
                result.append((variable, next(names), same))
        assert next(names, None) is None, network
        return result

    generator = model.generator
    generator_layers = list(generator.head.layers)
    for block in generator.residual_blocks:
        generator_layers += [block.conv_a, block.norm_a, block.conv_b, block.norm_b]
    generator_layers += list(generator.tail.layers)
    mapping = (pairs(model.encoder.layers, "encoder E") +
               pairs(generator_layers, "generator G"))
    hyper = model.hyperprior
    for layer, (kernel, bias) in zip(
            hyper.analysis.layers, np.reshape(fixture.variables("hyper-analysis h_a"), [-1, 2]),
            strict=True):
        mapping += [(layer.kernel, kernel, same), (layer.bias, bias, same)]
    for branch, network in ((hyper.synthesis_mean, "hyper-synthesis h_s (mean branch)"),
                            (hyper.synthesis_scale, "hyper-synthesis h_s (scale branch)")):
        for layer, (kernel, bias) in zip(
                branch.layers, np.reshape(fixture.variables(network), [-1, 2]), strict=True):
            layout = ((lambda x: np.transpose(x, (0, 1, 3, 2))) if layer.strides == (2, 2)
                      else (lambda x: x[::-1, ::-1]))
            mapping += [(layer.kernel, kernel, layout), (layer.bias, bias, same)]
    prior = hyper.z_prior.base
    prefix = fixture.variables(PRIOR)[0].rsplit("/", 1)[0]
    for i, matrix in enumerate(prior._matrices):
        mapping += [(matrix, f"{prefix}/matrix_{i}", same),
                    (prior._biases[i], f"{prefix}/bias_{i}", same)]
        if i < len(prior._factors):
            mapping.append((prior._factors[i], f"{prefix}/factor_{i}", same))
    for layer, name in zip(discriminator_layers(discriminator), D_LAYERS, strict=True):
        mapping += [(layer.kernel, f"Discriminator/{name}/kernel", same),
                    (layer.bias, f"Discriminator/{name}/bias", same)]
    mapped = {id(variable) for variable, _, _ in mapping}
    unmapped = [v.name for v in model.trainable_variables + discriminator.trainable_variables
                if id(v) not in mapped]
    assert not unmapped, unmapped
    return mapping


def discriminator_layers(discriminator) -> list:
    return [discriminator.condition, *discriminator.body, discriminator.logits]


def initial_value(fixture: Fixture, name: str) -> np.ndarray:
    if "/HyperAnalysis/" in name and name.endswith("kernel_rdft"):
        return fixture[f"initial_effective_kernel/{name}"]
    return fixture[f"initial/{name}"]


def expected_name(fixture: Fixture, prefix: str, name: str) -> str:
    """The stored name of `prefix`'s array for variable `name` (h_a: its spatial kernel)."""
    if "/HyperAnalysis/" in name and name.endswith("kernel_rdft"):
        return {"grad_total": "grad_total_effective_kernel",
                "update": "update_effective_kernel"}[prefix] + f"/{name}"
    return f"{prefix}/{name}"


def run_project_step(fixture: Fixture, monkeypatch: pytest.MonkeyPatch, lpips_loss) -> dict:
    """The project's step from the authors' state; returns what it produced."""
    widths = fixture.index["widths"]
    monkeypatch.setitem(configs.MODEL_PRESETS, "authors-tiny", tiny_config(widths))
    config = configs.TRAINING_PRESETS["hific-lo"].replace(
        model="authors-tiny", batch_size=fixture.index["batch"]["size_per_part"],
        crop_size=fixture.index["batch"]["crop"])
    trainer = loop.Trainer(config, fixture.run_dir, perceptual_loss=lpips_loss)
    mapping = variable_map(trainer, fixture)
    for variable, name, layout in mapping:
        variable.assign(layout(initial_value(fixture, name)))
    for layer, name in zip(discriminator_layers(trainer.discriminator), D_LAYERS, strict=True):
        layer.u.assign(fixture[f"initial/Discriminator/{name}/kernel/u_var"])
    trainer.step.assign(fixture.step)
    # The authors round z around their bottleneck's learned medians (its quantiles, which
    # the data moved away from the prior's medians): the same medians here.
    medians = fixture[f"initial/{fixture.variables(PRIOR)[-1]}"]
    monkeypatch.setattr(Hyperprior, "z_medians",
                        lambda self: tf.constant(medians[:, 0, 1], tf.float32))

    recorded: dict = {"logits": {}, "gradients": {}, "learning_rates": {}}
    d_loss, g_loss = losses.discriminator_loss, losses.generator_gan_loss

    def recording_d_loss(real, fake):
        recorded["logits"].update(d_real=real.numpy(), d_fake=fake.numpy())
        return d_loss(real, fake)

    def recording_g_loss(fake):
        recorded["logits"]["g_fake"] = fake.numpy()
        return g_loss(fake)

    monkeypatch.setattr(losses, "discriminator_loss", recording_d_loss)
    monkeypatch.setattr(losses, "generator_gan_loss", recording_g_loss)
    for optimizer in (trainer.generator_optimizer, trainer.discriminator_optimizer):
        apply = optimizer.apply_gradients

        def recording_apply(pairs, *args, _apply=apply, _optimizer=optimizer, **kwargs):
            pairs = list(pairs)
            recorded["gradients"].update({id(v): g.numpy() for g, v in pairs})
            return _apply(pairs, *args, **kwargs)

        monkeypatch.setattr(optimizer, "apply_gradients", recording_apply)
    noise = NoiseSource(tfc_math_ops.tf, {k[len("noise/"):]: fixture[k]
                                          for k in fixture.index["noise"]})
    monkeypatch.setattr(tfc_math_ops, "tf", noise)
    inputs = fixture.files["inputs.npz"]
    batch = tf.constant(np.concatenate([inputs["inputs/d_batch"], inputs["inputs/g_batch"]]),
                        tf.float32) / 255.0
    metrics = {k: v.numpy() for k, v in trainer._replica_step(batch).items()}
    assert noise.drawn == list(NOISE_ORDER)
    return {"trainer": trainer, "mapping": mapping, "metrics": metrics, **recorded}


@pytest.fixture(scope="module")
def authors_step_folder() -> Path:
    return shared_data("authors_training_step")


@pytest.fixture(scope="module")
def lpips_loss():
    from hific_tf.evaluation.perceptual.lpips import load_lpips, perceptual_loss
    return perceptual_loss(load_lpips())


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_step_is_the_authors(case: str, authors_step_folder: Path, lpips_loss,
                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fixture = Fixture(authors_step_folder, case)
    fixture.run_dir = tmp_path
    produced = run_project_step(fixture, monkeypatch, lpips_loss)
    metrics, scalars = produced["metrics"], fixture.entry["scalars"]
    recipe = produced["trainer"].recipe
    compare = Comparison()
    for name, value in (("noisy_bpp", metrics["bpp_noisy"]),
                        ("quantized_bpp", metrics["bpp_quantized"]),
                        ("rate_weight", metrics["rate_weight"]),
                        ("weighted_rate", metrics["rate_weight"] * metrics["bpp_noisy"]),
                        ("weighted_distortion", recipe.k_m * metrics["mse"]),
                        ("lpips_term", recipe.k_p * metrics["lpips"]),
                        ("g_loss_times_beta", recipe.beta * metrics["generator_gan"]),
                        ("total_egp_loss", metrics["loss_egp"]),
                        ("d_loss", metrics["loss_d"]),
                        ("learning_rate/adam_transform", metrics["learning_rate"])):
        compare.check("loss", name, scalars[name], value)
    logits = produced["logits"]
    compare.check("logits", "D step, real", fixture["d_step/real_logits"], logits["d_real"])
    compare.check("logits", "D step, fake", fixture["d_step/fake_logits"], logits["d_fake"])
    compare.check("logits", "G step, fake", fixture["g_step/fake_logits"], logits["g_fake"])

    discriminator_ids = {id(v) for v in produced["trainer"].discriminator.trainable_variables}
    for variable, name, layout in produced["mapping"]:
        gradient = produced["gradients"][id(variable)]
        prefix = "grad_d_loss" if id(variable) in discriminator_ids else "grad_total"
        compare.check_array(fixture, "gradient", expected_name(fixture, prefix, name),
                            layout(gradient))
        initial = initial_value(fixture, name)
        change = layout(variable.numpy()) - initial
        # A float32 weight cannot change by less than its spacing: h_a's updates in the
        # cases where the rate is tiny come close to it (the authors round r, here k).
        resolution = np.spacing(np.abs(initial.astype(np.float32))) / 2
        compare.check_array(fixture, "update", expected_name(fixture, "update", name), change,
                            resolution)
    for layer, name in zip(discriminator_layers(produced["trainer"].discriminator), D_LAYERS,
                           strict=True):
        key = f"Discriminator/{name}/kernel/u_var"
        compare.check("u", f"{key} after the step",
                      fixture[f"initial/{key}"] + fixture[f"update/{key}"], layer.u.numpy())
    assert compare.count >= 13 + 2 * len(produced["mapping"]) + len(D_LAYERS)
    assert not compare.failures, "\n".join(compare.failures)
