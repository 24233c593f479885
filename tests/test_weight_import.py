"""Importing a published graph into the Keras model, on stand-ins with the authors' structure
(tests/hific_stand_in.py): the imported model codes `.tfci` files as the graph does, and every
structural difference is refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding.model import HiFiC
from hific_tf.configs import model_preset
from hific_tf.errors import UserError
from hific_tf.published import converted, runner, weight_import

from hific_stand_in import Y_SYMBOLS, Z_SYMBOLS, build_stand_in, randomise, z_coding

TINY = model_preset("tiny")
# A second, narrower width with other block counts: widths are read off the graph.
NARROW = dataclasses.replace(TINY, latent_channels=12, encoder_channels=(6, 12, 16, 24, 40),
                             residual_blocks=2, hyper_channels=16)
# The first width's stand-in uses version-1 loops, the second's control-flow v2 functions
# and RDFT-parameterised h_s kernels as well.
VARIANTS = {"tiny": (TINY, "v1", False), "narrow": (NARROW, "v2", True)}
SIZES = [(64, 64), (128, 128), (100, 74), (1, 1)]
NAME = "hific-lo"
MIN_PSNR = 50.0
BOUNDARY = 1e-4


def synthetic_image(height: int, width: int) -> np.ndarray:
    """A smooth picture with noise, deterministic."""
    rows, columns = np.mgrid[0:height, 0:width]
    base = np.stack([rows * 1.5 + 40, columns * 2.0 + 20, (rows + columns) * 0.8 + 60], -1)
    noise = np.random.default_rng(height * 1000 + width).normal(0, 12, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


class StandIn:
    """A stand-in graph, its reference client, the symbols its sender codes, and the
    checkpoint imported from it."""

    def __init__(self, variant: str) -> None:
        config, control_flow, rdft_synthesis = VARIANTS[variant]
        self.expected = config
        tf.keras.utils.set_random_seed(11)
        self.source = randomise(HiFiC(config).build_weights(), seed=5)
        self.graph = build_stand_in(self.source, control_flow=control_flow,
                                    rdft_synthesis=rdft_synthesis)
        self.reference = runner.PublishedModel(self.graph, NAME)
        imported = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.train.import_meta_graph(self.graph), [])
        tensor = imported.graph.get_tensor_by_name
        self.sender_symbols = imported.prune(
            [tensor("input_image:0")], [tensor(f"{Y_SYMBOLS}:0"), tensor(f"{Z_SYMBOLS}:0")])
        model, coding = weight_import.import_published(self.graph)
        self.config = model.config
        self.coder = converted.TfciCoder(model, coding, NAME)


@pytest.fixture(scope="module", params=list(VARIANTS))
def stand_in(request: pytest.FixtureRequest) -> StandIn:
    return StandIn(request.param)


@pytest.mark.slow
def test_widths_and_blocks_are_read_from_the_graph(stand_in: StandIn) -> None:
    config = stand_in.expected
    assert stand_in.config.encoder_channels == config.encoder_channels
    assert stand_in.config.latent_channels == config.latent_channels
    assert stand_in.config.hyper_channels == config.hyper_channels
    assert stand_in.config.residual_blocks == config.residual_blocks
    model = stand_in.coder.model
    # E and G are constants in the graph: copied exactly. h_a's kernels are RDFT
    # coefficients in the graph, so folding them rounds in float32.
    for imported, source in zip(model.encoder.weights + model.generator.weights,
                                stand_in.source.encoder.weights
                                + stand_in.source.generator.weights, strict=True):
        np.testing.assert_array_equal(imported, source)
    for imported, source in zip(model.hyperprior.analysis.weights,
                                stand_in.source.hyperprior.analysis.weights, strict=True):
        np.testing.assert_allclose(imported, source, atol=1e-6)
    # Means and scales are told apart by where they go, not by their (equal) shapes.
    np.testing.assert_allclose(model.hyperprior.synthesis_scale.layers[-1].kernel,
                               stand_in.source.hyperprior.synthesis_scale.layers[-1].kernel,
                               atol=1e-6)
    # z's medians are read from the graph's quantisation, not taken as 0.
    np.testing.assert_allclose(stand_in.coder.coding.z_medians, z_coding(stand_in.source)[2],
                               atol=1e-6)
    assert (stand_in.coder.coding.precision, stand_in.coder.coding.overflow_width) == (16, 4)


@pytest.mark.slow
@pytest.mark.parametrize("height, width", SIZES)
def test_imported_model_codes_as_the_graph_does(stand_in: StandIn, height: int,
                                                width: int) -> None:
    """The must-show: the same y and z symbols as the stand-in's sender (a difference only
    where the value lies within 1e-4 of a rounding boundary), the stand-in's file decoded to
    at least 50 dB of its receiver's output, and the imported model's file decoded by the
    stand-in's receiver likewise."""
    image = synthetic_image(height, width)
    sent = stand_in.coder.symbols(image)
    ours = stand_in.coder.compress(image)
    # The other direction first: the stand-in's receiver decodes the imported model's file.
    assert psnr(stand_in.reference.decompress(ours),
                stand_in.coder.decompress(ours)) >= MIN_PSNR
    if min(height, width) < 9:
        # Like the authors' graph, the stand-in pads with tf.pad REFLECT, which needs each
        # pad below the side: it cannot code this image (the imported model can, above).
        with pytest.raises(UserError, match=f"cannot code a {height}x{width} image: "
                                                      "its graph pads by mirroring"):
            stand_in.reference.compress(image)
        return
    theirs = stand_in.reference.compress(image)
    y_symbols, z_symbols = (value.numpy() for value in
                            stand_in.sender_symbols(tf.constant(image[np.newaxis])))
    for ours_symbols, their_symbols, unrounded in (
            (sent.y_symbols, y_symbols, sent.y_unrounded),
            (sent.z_symbols, z_symbols, sent.z_unrounded)):
        assert ours_symbols.shape == their_symbols.shape
        differ = ours_symbols != their_symbols
        near_boundary = np.abs(unrounded - np.round(unrounded)) < BOUNDARY
        assert not np.any(differ & ~near_boundary)
        assert np.abs(ours_symbols - their_symbols).max(initial=0) <= 1
    if np.array_equal(sent.y_symbols, y_symbols) and np.array_equal(sent.z_symbols, z_symbols):
        assert ours == theirs  # the same symbols and tables make the same bytes
    assert psnr(stand_in.coder.decompress(theirs),
                stand_in.reference.decompress(theirs)) >= MIN_PSNR


@pytest.mark.slow
def test_the_converted_models_own_files_reconstruct_as_the_graph_does(
        stand_in: StandIn) -> None:
    """This project's .hfc path (its own range coder and y tables, the graph's z tables,
    h_s in float) codes the same symbols, so it reconstructs what the graph does."""
    model = HiFiC(stand_in.coder.model.config).build_weights()
    model.set_weights(stand_in.coder.model.get_weights())
    model.prepare_for_coding(z_tables=stand_in.coder.coding.z_tables())
    image = synthetic_image(100, 74)
    own = model.decompress(model.compress(tf.constant(image))).numpy()
    assert psnr(own, stand_in.reference.decompress(stand_in.reference.compress(image))
                ) >= MIN_PSNR


@pytest.fixture(scope="module")
def tiny_source() -> HiFiC:
    tf.keras.utils.set_random_seed(12)
    return randomise(HiFiC(TINY).build_weights(), seed=6)


def refusal(graph: tf.compat.v1.MetaGraphDef, expected=TINY) -> str:
    """The one-line message with which importing `graph` into `expected` is refused."""
    with pytest.raises(weight_import.StructureError) as caught:
        weight_import.import_published(graph, expected, "tiny")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.slow
def test_a_missing_residual_block_is_refused(tiny_source: HiFiC) -> None:
    assert refusal(build_stand_in(tiny_source, {"residual_block"})) == (
        "the graph's structure differs from the tiny architecture: residual_blocks is 0 in the "
        "graph, 1 in tiny")


@pytest.mark.slow
def test_a_missing_norm_is_refused(tiny_source: HiFiC) -> None:
    assert refusal(build_stand_in(tiny_source, {"encoder_norm"})) == (
        "the graph's structure differs from the tiny architecture: E layer 2 is a conv 3x3 "
        "8->16 stride 2 padding same in the graph, a conv 3x3 8->16 stride 2 padding same + "
        "ChannelNorm in tiny")


@pytest.mark.slow
def test_a_changed_width_is_refused() -> None:
    wider = dataclasses.replace(TINY, encoder_channels=(8, 16, 24, 40, 48))
    assert refusal(build_stand_in(HiFiC(wider).build_weights())) == (
        "the graph's structure differs from the tiny architecture: encoder_channels is "
        "(8, 16, 24, 40, 48) in the graph, (8, 16, 24, 32, 48) in tiny")


@pytest.mark.slow
def test_another_normalization_is_refused(tiny_source: HiFiC) -> None:
    """The published graphs hold ChannelNorm: an instance- or batch-normalised recipe cannot
    start from them."""
    graph = build_stand_in(tiny_source)
    for normalization in ("instance", "batch"):
        assert refusal(graph, dataclasses.replace(TINY, normalization=normalization)) == (
            "the graph's structure differs from the tiny architecture: normalization is "
            f"channel in the graph, {normalization} in tiny")


@pytest.mark.slow
def test_an_unknown_norm_pattern_is_refused_and_both_known_ones_import(
        tiny_source: HiFiC) -> None:
    assert refusal(build_stand_in(tiny_source, norm_pattern="divide")) == (
        "E layer 1 is normalised over its channels (a Mean reads it) in an op pattern the "
        "importer does not know; it knows ChannelNorm as tf.nn.batch_normalization builds it "
        "and as gamma * (x - mean) * rsqrt(var + eps) + beta")
    networks = weight_import.trace_networks(build_stand_in(tiny_source, norm_pattern="rsqrt"))
    norms = [layer for layer in tiny_source.submodules
             if type(layer).__name__ == "ChannelNorm"]
    found = [networks.generator_input_norm] + [layer.norm for network in (
        networks.encoder, networks.generator) for layer in network if layer.norm is not None]
    assert len(found) == len(norms)
    np.testing.assert_array_equal(networks.generator_input_norm[0],
                                  tiny_source.generator.head.layers[0].gamma)


@pytest.mark.slow
def test_keras_same_padding_in_the_hyperprior_is_refused(tiny_source: HiFiC) -> None:
    assert refusal(build_stand_in(tiny_source, {"explicit_padding"})) == (
        "the graph's structure differs from the tiny architecture: h_a layer 2 is a conv 5x5 "
        "24->24 stride 2 padding same in the graph, a conv 5x5 24->24 stride 2 padding zeros "
        "(2, 2) in tiny")


@pytest.mark.slow
def test_another_scale_index_rule_is_refused(tiny_source: HiFiC) -> None:
    message = refusal(build_stand_in(tiny_source, {"next_greater_index"}))
    assert message.startswith(
        "the graph's scale indexes differ from the next-greater-entry rule over the scale "
        "table exp(linspace(ln 0.11, ln 256, 64)): scale ")


def test_a_graph_without_range_coders_is_refused() -> None:
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3])
        sent = tf.reshape(tf.strings.as_string(tf.reduce_sum(tf.cast(image, tf.int32))), [1])
        received = tf.compat.v1.placeholder(tf.string, [1])
        output = tf.zeros([1, 2, 2, 3]) + tf.cast(tf.strings.length(received[0]), tf.float32)
        build = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
        meta_graph.signature_def["sender"].CopyFrom(
            build(inputs={"image": info(image)}, outputs={"sum": info(sent)}))
        meta_graph.signature_def["receiver"].CopyFrom(
            build(inputs={"sum": info(received)}, outputs={"image": info(output)}))
    assert refusal(meta_graph) == "the sender has 0 range coders, HiFiC has two (z and y)"


@pytest.mark.slow
def test_training_starts_from_an_imported_published_model(tiny_source: HiFiC,
                                                          tmp_path) -> None:
    from hific_tf.storage.checkpoints import load_model

    from conftest import PHOTOS, run_cli

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / f"{NAME}.metagraph").write_bytes(build_stand_in(tiny_source).SerializeToString())
    run = tmp_path / "run"
    common = [f"--run_dir={run}", "--num_steps=1", "--crop_size=64", "--batch_size=2",
              "--cache_decoded", f"--data={PHOTOS}",
              f"--published_dir={folder}"]
    result = run_cli("train", "--preset=tiny-mselpips", f"--init_from_published={NAME}",
                     *common)
    assert result.returncode == 0, result.stderr[-2000:]
    trained = load_model(run)
    # One Adam step moves each weight by about the learning rate (1e-3) at most.
    for network in ("encoder", "generator"):
        for after, before in zip(getattr(trained, network).weights,
                                 getattr(tiny_source, network).weights, strict=True):
            np.testing.assert_allclose(after, before, atol=2e-3)
    result = run_cli("train", "--preset=mselpips-lo", "--k_p=0",
                     f"--init_from_published={NAME}", *common[1:],
                     f"--run_dir={tmp_path / 'other'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("error: the graph's structure differs from the hific architecture: "
            "encoder_channels is (8, 16, 24, 32, 48) in the graph, (60, 120, 240, 480, 960) "
            "in hific") in result.stderr


@pytest.mark.slow
def test_convert_writes_a_checkpoint_that_codes_tfci_files_and_starts_training(
        tiny_source: HiFiC, tmp_path) -> None:
    from PIL import Image

    from hific_tf.storage.images import read_image

    from conftest import PHOTOS, run_cli

    folder = tmp_path / "published"
    folder.mkdir()
    (folder / f"{NAME}.metagraph").write_bytes(build_stand_in(tiny_source).SerializeToString())
    converted = tmp_path / "converted"
    result = run_cli("convert", f"--model={NAME}", f"--published_dir={folder}",
                     f"--output={converted}", "--preset=tiny")
    assert result.returncode == 0, result.stderr[-2000:]
    image = synthetic_image(100, 74)
    Image.fromarray(image).save(tmp_path / "photo.png")
    for model, output in ((str(converted), "ours.tfci"), (NAME, "theirs.tfci")):
        result = run_cli("compress", f"--model={model}", f"--published_dir={folder}",
                         f"--output={tmp_path / output}", str(tmp_path / "photo.png"))
        assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "ours.tfci").read_bytes() == (tmp_path / "theirs.tfci").read_bytes()
    for model, output in ((str(converted), "ours.png"), (NAME, "theirs.png")):
        result = run_cli("decompress", f"--model={model}", f"--published_dir={folder}",
                         f"--output={tmp_path / output}", str(tmp_path / "theirs.tfci"))
        assert result.returncode == 0, result.stderr[-2000:]
    assert psnr(read_image(tmp_path / "ours.png"),
                read_image(tmp_path / "theirs.png")) >= MIN_PSNR
    # This project's own coding path: a SavedModel with z's tables from the graph.
    result = run_cli("export", f"--model={converted}", f"--output={tmp_path / 'saved'}")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("train", "--preset=tiny-hific", f"--init_from={converted}",
                     f"--run_dir={tmp_path / 'run'}", "--num_steps=1", "--crop_size=64",
                     "--batch_size=2", "--cache_decoded",
                     f"--data={PHOTOS}")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("convert", f"--model={NAME}", f"--published_dir={folder}",
                     f"--output={tmp_path / 'other'}", "--preset=hific")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "hific-tf: error: the graph's structure differs from the hific architecture: "
        "encoder_channels is (8, 16, 24, 32, 48) in the graph, (60, 120, 240, 480, 960) in "
        "hific")
