"""Files decode on any machine: stored tables, a stable identifier, and an exact integer h_s.

The cross-configuration test encodes in one process and decodes in others that differ in
TensorFlow's oneDNN path (TF_ENABLE_ONEDNN_OPTS 0 and 1), intra-op threads (1 and 2) and the
code path (the library, the exported SavedModel, the CLI), both ways.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding import entropy_coding
from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.configs import ModelConfig, model_preset
from hific_tf.errors import UserError
from hific_tf.storage import zoo
from hific_tf.storage.images import read_image

from conftest import REPO, coding_parameters, shared_data

SHIPPED = zoo.SHIPPED_MODELS[0]


def z_hat_of(model: HiFiC, image: np.ndarray) -> tf.Tensor:
    x = reflect_pad(tf.cast(image, tf.float32) / 255.0, model.config.pad_multiple)[tf.newaxis]
    _, z_hat = model.hyperprior.coder.encode_z(model.hyperprior.analysis(model.encoder(x)))
    return z_hat


def numpy_integer_synthesis(network: tf.keras.Sequential, z_hat: np.ndarray) -> np.ndarray:
    """h_s's integer accumulator computed independently, with int64 NumPy loops."""
    values = np.round(z_hat.astype(np.float64) * 2.0 ** entropy_coding.ACTIVATION_FRACTION_BITS)
    values = values.astype(np.int64)[0]
    for position, layer in enumerate(network.layers):
        kernel, bias = (w.numpy() for w in layer.weights)
        transposed = isinstance(layer, tf.keras.layers.Conv2DTranspose)
        kernel_int, bias_int, step = entropy_coding.quantize_weights(
            kernel, bias, 2 if transposed else 3)
        kernel_int = kernel_int.astype(np.int64)
        size, stride = kernel.shape[0], layer.strides[0]
        height, width, _ = values.shape
        if transposed:  # [k, k, out, in]; the adjoint of a stride-s convolution zero-padded
            # (k//2, (k-1)//2), as the authors' h_s is
            full = np.zeros(((height - 1) * stride + size, (width - 1) * stride + size,
                             kernel.shape[2]), np.int64)
            for i in range(height):
                for j in range(width):
                    full[i * stride:i * stride + size, j * stride:j * stride + size] += (
                        kernel_int @ values[i, j])
            before = size // 2
            out = full[before:before + height * stride, before:before + width * stride]
        else:  # [k, k, in, out], stride 1, "same"
            padded = np.pad(values, ((size // 2, size // 2), (size // 2, size // 2), (0, 0)))
            out = np.zeros((height, width, kernel.shape[3]), np.int64)
            for di in range(size):
                for dj in range(size):
                    out += padded[di:di + height, dj:dj + width] @ kernel_int[di, dj]
        out = out + bias_int.astype(np.int64)
        if position == len(network.layers) - 1:
            return out
        values = np.round(np.maximum(out, 0) * step).astype(np.int64)
    raise AssertionError("unreachable")


def test_integer_h_s_equals_an_independent_int64_computation(tiny_model, rng):
    image = rng.integers(0, 256, (100, 74, 3), dtype=np.uint8)
    z_hat = z_hat_of(tiny_model, image)
    hyperprior = tiny_model.hyperprior
    for network, integer in ((hyperprior.synthesis_mean, hyperprior._integer_mean),
                             (hyperprior.synthesis_scale, hyperprior._integer_scale)):
        accumulator, exact = integer.accumulate(z_hat)
        assert bool(exact)
        expected = numpy_integer_synthesis(network, z_hat.numpy())
        np.testing.assert_array_equal(accumulator.numpy()[0], expected.astype(np.float64))


def test_integer_means_and_indexes_stay_close_to_the_float_network(tiny_model, rng):
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    z_hat = z_hat_of(tiny_model, image)
    hyperprior = tiny_model.hyperprior
    mean, index, _ = coding_parameters(hyperprior, z_hat, tf.shape(z_hat)[1:3] * 4)  # 8 x 8
    float_mean = hyperprior.synthesis_mean(z_hat)
    assert float(tf.reduce_max(tf.abs(mean - float_mean))) < 1e-3
    float_index = entropy_coding.table_index(
        hyperprior.synthesis_scale(z_hat),
        np.tile(tiny_model.coding_tables.scale_table[:-1].astype(np.float64),
                (tiny_model.config.latent_channels, 1)))
    assert float(tf.reduce_mean(tf.cast(index == float_index, tf.float32))) > 0.99


def test_index_rule_is_the_next_greater_table_entry():
    table = np.array([0.11, 0.5, 2.0, 8.0], np.float32)
    thresholds = entropy_coding.scale_thresholds(table, 1, None)
    values = tf.constant([[0.05], [0.11], [0.12], [0.5], [1.0], [7.9], [8.0], [300.0]])
    index = entropy_coding.table_index(values, thresholds).numpy().ravel()
    # The index of the smallest entry not below the scale, the last entry for larger ones.
    np.testing.assert_array_equal(index, [0, 0, 1, 1, 2, 3, 3, 3])


def test_sub_unit_errors_in_the_accumulator_move_no_index(tiny_model, rng):
    """Thresholds lie halfway between integers, so an error below half a unit of the exact
    accumulator (which the integer path never makes) could not move an index either."""
    z_hat = z_hat_of(tiny_model, rng.integers(0, 256, (128, 192, 3), dtype=np.uint8))
    accumulator, _ = tiny_model.hyperprior._integer_scale.accumulate(z_hat)
    thresholds = tiny_model.hyperprior.coder.scale_thresholds
    index = entropy_coding.table_index(accumulator, thresholds)
    noise = rng.uniform(-0.499, 0.499, accumulator.shape)
    np.testing.assert_array_equal(
        entropy_coding.table_index(accumulator + noise, thresholds).numpy(), index.numpy())


def test_bundled_identifier_is_a_hash_of_the_stored_bytes_alone(monkeypatch):
    """The identifier follows from the .npz file: recomputed here from its arrays, and
    loading computes no tables."""
    def no_tables(*args, **kwargs):
        raise AssertionError("a bundled model must not recompute its coding tables")

    monkeypatch.setattr("hific_tf.coding.hyperprior.build_tables", no_tables)
    model = zoo.load_bundled(SHIPPED)
    with np.load(zoo.bundled_folder() / f"{SHIPPED}{zoo.SUFFIX}") as stored:
        config = ModelConfig.from_json(bytes(stored["config"]).decode())
        digest = hashlib.sha256(config.to_json().encode())
        for key in sorted(k for k in stored.files if k.startswith("w")):
            value = stored[key].astype(np.float32)
            digest.update(f"{value.dtype.str}{value.shape}".encode())
            digest.update(value.tobytes())
        tables = entropy_coding.CodingTables.from_arrays(
            {k[len(zoo.TABLE_PREFIX):]: stored[k] for k in stored.files
             if k.startswith(zoo.TABLE_PREFIX)})
    tables.update_digest(digest)
    assert model.model_id.numpy() == digest.digest()[:16]


def test_a_bundle_without_tables_is_refused(tmp_path, monkeypatch):
    source = zoo.bundled_folder() / f"{SHIPPED}{zoo.SUFFIX}"
    with np.load(source) as stored:
        arrays = {k: stored[k] for k in stored.files if not k.startswith(zoo.TABLE_PREFIX)}
    np.savez(tmp_path / f"old{zoo.SUFFIX}", **arrays)
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(UserError, match=r"has no coding tables .*bundle it again"):
        zoo.load_bundled("old")


def test_run_directory_tables_are_fixed_at_first_use(tiny_checkpoint, tmp_path):
    from hific_tf.storage import checkpoints
    directory = tmp_path / "run"
    directory.mkdir()
    for path in tiny_checkpoint.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    first = checkpoints.load_for_coding(directory)
    assert (directory / checkpoints.TABLES_FILE).is_file()
    stored = dict(np.load(directory / checkpoints.TABLES_FILE))
    second = checkpoints.load_for_coding(directory)
    assert first.model_id.numpy() == second.model_id.numpy()
    for key, value in second.coding_tables.arrays().items():
        np.testing.assert_array_equal(value, stored[key])


def test_integer_mode_refuses_layers_it_cannot_evaluate_exactly():
    network = tf.keras.Sequential([tf.keras.layers.Conv2D(4, 3, padding="valid")])
    network.build([None, 8, 8, 4])
    with pytest.raises(ValueError, match="integer h_s does not support the layer"):
        entropy_coding.IntegerSynthesis(network, "h_s")


def test_float_mode_codes_too(rng):
    tf.keras.utils.set_random_seed(3)
    config = model_preset("tiny")
    model = HiFiC(ModelConfig.from_json(config.to_json().replace(
        '"hyper_synthesis": "integer"', '"hyper_synthesis": "float"'))).prepare_for_coding()
    image = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    decoded = model.decompress(model.compress(image)).numpy()
    assert decoded.shape == image.shape


# The cross-configuration test: several processes over the 20 validation photos.

@pytest.fixture(scope="module")
def validation_folders() -> list[Path]:
    """The 20 validation photos: val768 and more/val768 of the shared data set."""
    return [shared_data("photos/val768"), shared_data("photos/more/val768")]


def _environment(onednn: bool) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}


def _worker(root: Path, name: str, *, model: str, onednn: bool, threads: int,
            encode=(), decode=()) -> None:
    job = root / f"{name}.json"
    job.write_text(json.dumps({"model": model, "threads": threads,
                               "encode": [[str(s), str(t)] for s, t in encode],
                               "decode": [[str(s), str(t)] for s, t in decode]}))
    result = subprocess.run([sys.executable, str(REPO / "tests" / "portability_worker.py"),
                             str(job)], env=_environment(onednn), capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"


def _cli(onednn: bool, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "hific_tf.cli.main", *args],
                            env=_environment(onednn), capture_output=True, text=True,
                            timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def coded(validation_folders, tmp_path_factory) -> Path:
    """Encodes and decodes the photos under different configurations; returns the folder.

    a: library, oneDNN off, 1 thread · b: SavedModel, oneDNN on, 2 threads · cli: the CLI,
    oneDNN on · c: library, oneDNN on, 2 threads; `x_from_y` holds x's decodes of y's files.
    """
    from hific_tf.storage.export import export_saved_model

    root = tmp_path_factory.mktemp("portability")
    export_saved_model(zoo.load_bundled(SHIPPED), root / "saved_model")
    _worker(root, "a", model=SHIPPED, onednn=False, threads=1,
            encode=[(folder, root / "a") for folder in validation_folders],
            decode=[(root / "a", root / "a_from_a")])
    _worker(root, "b", model=str(root / "saved_model"), onednn=True, threads=2,
            encode=[(folder, root / "b") for folder in validation_folders],
            decode=[(root / "a", root / "b_from_a")])
    for folder in validation_folders:
        _cli(True, "compress", f"--model={SHIPPED}", str(folder), f"--output={root / 'cli'}")
    _cli(True, "decompress", f"--model={SHIPPED}", str(root / "a"),
         f"--output={root / 'cli_from_a'}")
    sources = ("a", "b", "cli")
    _worker(root, "c", model=SHIPPED, onednn=True, threads=2,
            decode=[(root / s, root / f"c_from_{s}") for s in sources])
    _worker(root, "a2", model=SHIPPED, onednn=False, threads=1,
            decode=[(root / s, root / f"a_from_{s}") for s in ("b", "cli")])
    return root


@pytest.mark.slow
def test_files_decode_identically_across_configurations(coded):
    stems = sorted(path.stem for path in (coded / "a").glob("*.hfc"))
    assert len(stems) == 20
    for source in ("b", "cli"):
        assert sorted(p.stem for p in (coded / source).glob("*.hfc")) == stems
    for source, decoders in (("a", ("a", "b", "c", "cli")), ("b", ("a", "c")),
                             ("cli", ("a", "c"))):
        for stem in stems:
            images = [read_image(coded / f"{d}_from_{source}" / f"{stem}.png")
                      for d in decoders]
            for other in images[1:]:
                assert np.max(np.abs(images[0].astype(int) - other.astype(int))) <= 1, (
                    f"{stem} from {source}")
            latents = [np.load(coded / f"{d}_from_{source}" / f"{stem}.y_hat.npy")
                       for d in ("a", "c")]
            np.testing.assert_array_equal(latents[0], latents[1])


@pytest.mark.slow
def test_fuzzed_files_are_refused_cleanly_or_decoded(tmp_path):
    """The seeded in-process fuzzer (benchmarks/fuzz_decoder.py, 10 000 cases there) on a
    smaller run: no crash, every refusal one line, no case slower than a few seconds."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fuzz_decoder.py"), "--cases=600",
         "--seed=1", f"--output={tmp_path}"], env=_environment(False), capture_output=True,
        text=True, timeout=1200, cwd=REPO)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.returncode == 0, summary["crashes"][:5]
    assert summary["crashes"] == []
    refused = sum(n for kind, n in summary["outcomes"].items() if kind.endswith("refused"))
    assert refused > 300
    assert summary["slowest_case_seconds"] < 10
    assert summary["rss_growth_mib"] < 2048
