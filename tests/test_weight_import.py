"""Importing a published graph's weights into the Keras model, on stand-ins built from this
project's architecture (tests/hific_stand_in.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hific_tf import published, weight_import
from hific_tf.configs import model_preset
from hific_tf.model import HiFiC

from hific_stand_in import build_stand_in, randomise

TINY = model_preset("tiny")


@pytest.fixture(scope="module")
def source_model() -> HiFiC:
    return randomise(HiFiC(TINY).build_weights(), seed=5)


@pytest.fixture(scope="module")
def stand_in(source_model: HiFiC) -> tf.compat.v1.MetaGraphDef:
    return build_stand_in(source_model)


@pytest.fixture(scope="module")
def image(photos) -> np.ndarray:
    from hific_tf.images import read_image

    return read_image(photos[0])[100:230, 300:500]


def test_structure_is_found_from_the_data_flow(stand_in: tf.compat.v1.MetaGraphDef,
                                               source_model: HiFiC) -> None:
    networks = weight_import.trace_networks(stand_in)
    assert [len(networks.encoder), len(networks.analysis), len(networks.synthesis_mean),
            len(networks.synthesis_scale), len(networks.generator)] == [6, 3, 3, 3, 8]
    assert networks.infer_config() == {
        "encoder_channels": TINY.encoder_channels, "latent_channels": TINY.latent_channels,
        "hyper_channels": TINY.hyper_channels, "residual_blocks": TINY.residual_blocks,
        "num_scales": TINY.num_scales}
    # Means and scales are told apart by where they go, not by their (equal) shapes.
    np.testing.assert_array_equal(networks.synthesis_scale[-1].kernel,
                                  source_model.hyperprior.synthesis_scale.layers[-1].kernel)
    np.testing.assert_array_equal(networks.synthesis_mean[-1].kernel,
                                  source_model.hyperprior.synthesis_mean.layers[-1].kernel)
    assert [layer.norm is not None for layer in networks.encoder] == [True] * 5 + [False]
    np.testing.assert_array_equal(networks.generator_input_norm[0],
                                  source_model.generator.head.layers[0].gamma)


def test_import_reproduces_the_stand_ins_reconstruction(
        stand_in: tf.compat.v1.MetaGraphDef, source_model: HiFiC, image: np.ndarray) -> None:
    """Tolerance: the stand-in and the Keras model run the same arithmetic in different ops
    (float32), so a latent on a rounding boundary may flip: the uint8 reconstructions may
    differ by one level on under 0.1 % of the pixels, and nowhere by more."""
    reference = published.PublishedModel(stand_in, "hific-lo")
    expected = reference.decompress(reference.compress(image))
    imported = weight_import.import_published(stand_in, TINY, "tiny")
    for variable, original in zip(imported.encoder.weights, source_model.encoder.weights,
                                  strict=True):
        np.testing.assert_array_equal(variable, original)
    decoded = imported.decompress(imported.compress(tf.constant(image))).numpy()
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3
    # Without the graph's z tables (its own fresh prior), the result is clearly different:
    # the tables are part of what is imported.
    fresh = HiFiC(TINY).build_weights()
    weight_import.import_networks(weight_import.trace_networks(stand_in), fresh, "tiny")
    fresh.prepare_for_coding()
    other = fresh.decompress(fresh.compress(tf.constant(image))).numpy()
    assert np.abs(other.astype(int) - expected.astype(int)).max() > 1


@pytest.mark.parametrize("omit, message", [
    ("residual_block", "the graph's structure differs from the tiny architecture: "
                       "residual_blocks is 0 in the graph, 1 in tiny"),
    ("encoder_norm", "E layer 2 is a conv 3x3 8->16 stride 2 in the graph, a conv 3x3 "
                     "8->16 stride 2 \\+ ChannelNorm in tiny"),
])
def test_import_refuses_a_missing_block(source_model: HiFiC, omit: str, message: str) -> None:
    with pytest.raises(weight_import.StructureError, match=message):
        weight_import.import_published(build_stand_in(source_model, {omit}), TINY, "tiny")


def test_import_refuses_a_changed_width() -> None:
    wider = dataclasses.replace(TINY, encoder_channels=(8, 16, 24, 40, 48))
    graph = build_stand_in(HiFiC(wider).build_weights())
    with pytest.raises(weight_import.StructureError,
                       match=r"encoder_channels is \(8, 16, 24, 40, 48\) in the graph, "
                             r"\(8, 16, 24, 32, 48\) in tiny"):
        weight_import.import_published(graph, TINY, "tiny")


def test_import_refuses_graphs_that_are_not_hific() -> None:
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3])
        sent = tf.reshape(tf.strings.as_string(tf.reduce_sum(tf.cast(image, tf.int32))), [1])
        received = tf.compat.v1.placeholder(tf.string, [1])
        output = tf.zeros([1, 2, 2, 3]) + tf.strings.to_number(received[0])
        build = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
        meta_graph.signature_def["sender"].CopyFrom(
            build(inputs={"image": info(image)}, outputs={"sum": info(sent)}))
        meta_graph.signature_def["receiver"].CopyFrom(
            build(inputs={"sum": info(received)}, outputs={"image": info(output)}))
    with pytest.raises(weight_import.StructureError,
                       match="the sender has 0 range coders, HiFiC has two"):
        weight_import.import_published(meta_graph, TINY, "tiny")


@pytest.mark.slow
def test_training_starts_from_an_imported_published_model(
        stand_in: tf.compat.v1.MetaGraphDef, source_model: HiFiC, tmp_path) -> None:
    from hific_tf.checkpoints import load_model

    from conftest import PHOTOS, run_cli

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / "hific-lo.metagraph").write_bytes(stand_in.SerializeToString())
    run = tmp_path / "run"
    common = [f"--run_dir={run}", "--num_steps=1", "--crop_size=64", "--batch_size=2",
              "--cache_decoded", f"--data={PHOTOS}",
              f"--published_dir={folder}"]
    result = run_cli("train", "--preset=tiny-mselpips", "--init_from_published=hific-lo",
                     *common)
    assert result.returncode == 0, result.stderr[-2000:]
    trained = load_model(run)
    # One Adam step moves each weight by about the learning rate (1e-3) at most.
    for network in ("encoder", "generator"):
        for after, before in zip(getattr(trained, network).weights,
                                 getattr(source_model, network).weights, strict=True):
            np.testing.assert_allclose(after, before, atol=2e-3)
    result = run_cli("train", "--preset=mselpips-lo", "--k_p=0",
                     "--init_from_published=hific-lo", *common[1:],
                     f"--run_dir={tmp_path / 'other'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("error: the graph's structure differs from the hific architecture: "
            "encoder_channels is (8, 16, 24, 32, 48) in the graph, (60, 120, 240, 480, 960) "
            "in hific") in result.stderr
