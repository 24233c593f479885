"""Published models and .tfci files, on a stand-in graph with the published signature layout.

The real hific-lo/-mi/-hi metagraphs are not available here, so the test builds a tiny graph
of the same kind in tf.compat.v1 graph mode: constants only, tensorflow-compression's
range-coding ops (PmfToQuantizedCdf, UnboundedIndexRangeEncode/Decode), signatures "sender"
and "receiver" whose keys sort in another order than they are created in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression  # noqa: F401  Registers the range-coding ops.
from tensorflow_compression.python.ops import gen_ops

from hific_tf import published
from hific_tf.bitstream import FormatError
from hific_tf.cache import MissingResourceError
from hific_tf.errors import UserError

NAME = "hific-lo"
CHANNELS = 2
PRECISION = 16
OFFSET = -4
# Analysis kernel [2, 2, 3, CHANNELS] and synthesis kernel [2, 2, 3, CHANNELS] (transposed
# convolution: [height, width, output channels, input channels]); small integers, and the
# scales are 1/64 and 2.5, so every value in both graphs is exact in float32.
ANALYSIS = np.random.default_rng(7).integers(-1, 2, size=(2, 2, 3, CHANNELS)).astype(np.float32)
SYNTHESIS = np.random.default_rng(8).integers(-2, 3, size=(2, 2, 3, CHANNELS)).astype(np.float32)
ANALYSIS_SCALE = 1 / 64
SYNTHESIS_SCALE = 10.5
SYNTHESIS_BIAS = 128.0


def _pmf() -> np.ndarray:
    """Per channel: 9 regular values OFFSET..OFFSET+8, then the overflow bin."""
    centre = np.exp(-np.abs(np.arange(9) + OFFSET) / (1.0 + np.arange(CHANNELS)[:, None]))
    pmf = np.concatenate([centre, np.full((CHANNELS, 1), 0.1)], axis=1)
    return (pmf / pmf.sum(axis=1, keepdims=True)).astype(np.float32)


def build_stand_in() -> tf.compat.v1.MetaGraphDef:
    """A MetaGraphDef with the published models' signature layout and range coding."""
    graph = tf.compat.v1.Graph()
    with graph.as_default():
        cdf = gen_ops.pmf_to_quantized_cdf(tf.constant(_pmf()), precision=PRECISION)
        cdf_size = tf.fill([CHANNELS], _pmf().shape[1] + 1)
        offset = tf.fill([CHANNELS], OFFSET)

        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="input_image")
        pixels = tf.cast(image, tf.float32)
        floor = tf.reduce_min(pixels, axis=[0, 1, 2])
        y = tf.nn.conv2d(pixels - floor, tf.constant(ANALYSIS), strides=2,
                         padding="VALID") * ANALYSIS_SCALE
        y_int = tf.cast(tf.round(y), tf.int32)
        index = tf.broadcast_to(tf.range(CHANNELS), tf.shape(y_int))
        y_string = gen_ops.unbounded_index_range_encode(
            y_int, index, cdf, cdf_size, offset, precision=PRECISION, overflow_width=4)
        sent = {"y_string": tf.reshape(y_string, [1]), "y_shape": tf.shape(y)[1:3],
                "floor": floor}

        got_string = tf.compat.v1.placeholder(tf.string, [1], name="y_string")
        got_shape = tf.compat.v1.placeholder(tf.int32, [2], name="y_shape")
        got_floor = tf.compat.v1.placeholder(tf.float32, [3], name="floor")
        decode_index = tf.broadcast_to(tf.range(CHANNELS),
                                       tf.concat([[1], got_shape, [CHANNELS]], axis=0))
        y_hat = gen_ops.unbounded_index_range_decode(
            got_string[0], decode_index, cdf, cdf_size, offset, precision=PRECISION,
            overflow_width=4)
        output_shape = tf.concat([[1], 2 * got_shape, [3]], axis=0)
        output = tf.nn.conv2d_transpose(tf.cast(y_hat, tf.float32), tf.constant(SYNTHESIS),
                                        output_shape, strides=2, padding="VALID")
        output = output * SYNTHESIS_SCALE + SYNTHESIS_BIAS + got_floor
        received = {"y_string": got_string, "y_shape": got_shape, "floor": got_floor}
        build = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
        info = tf.compat.v1.saved_model.utils.build_tensor_info
        meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
        meta_graph.signature_def["sender"].CopyFrom(build(
            inputs={"image": info(image)},
            outputs={key: info(tensor) for key, tensor in sent.items()}))
        meta_graph.signature_def["receiver"].CopyFrom(build(
            inputs={key: info(tensor) for key, tensor in received.items()},
            outputs={"output_image": info(output)}))
    return meta_graph


def expected_reconstruction(image: np.ndarray) -> np.ndarray:
    """What the stand-in decodes `image` to, computed in NumPy (even H and W only)."""
    height, width, _ = image.shape
    pixels = image.astype(np.float64)
    floor = pixels.min(axis=(0, 1))
    blocks = (pixels - floor).reshape(height // 2, 2, width // 2, 2, 3)
    y = np.einsum("iajbc,abcd->ijd", blocks, ANALYSIS) * ANALYSIS_SCALE
    y_hat = np.round(y)
    output = np.einsum("ijd,abcd->iajbc", y_hat, SYNTHESIS).reshape(height, width, 3)
    output = output * SYNTHESIS_SCALE + SYNTHESIS_BIAS + floor
    return np.clip(np.round(output), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def stand_in() -> tf.compat.v1.MetaGraphDef:
    return build_stand_in()


@pytest.fixture(scope="module")
def published_dir(stand_in: tf.compat.v1.MetaGraphDef,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the stand-in as hific-lo.metagraph."""
    directory = tmp_path_factory.mktemp("published")
    (directory / f"{NAME}.metagraph").write_bytes(stand_in.SerializeToString())
    return directory


@pytest.fixture(scope="module")
def model(published_dir: Path) -> published.PublishedModel:
    return published.load_published(NAME, directory=published_dir)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


def test_stand_in_uses_the_range_coding_ops(stand_in: tf.compat.v1.MetaGraphDef) -> None:
    ops = {node.op for node in stand_in.graph_def.node}
    assert {"PmfToQuantizedCdf", "UnboundedIndexRangeEncode",
            "UnboundedIndexRangeDecode"} <= ops
    assert not {"VariableV2", "VarHandleOp"} & ops


def test_round_trip_gives_the_exact_reconstruction(model: published.PublishedModel,
                                                   image: np.ndarray) -> None:
    data = model.compress(image)
    assert isinstance(data, bytes)
    decoded = model.decompress(data)
    assert decoded.dtype == np.uint8 and decoded.shape == image.shape
    expected = expected_reconstruction(image)
    # The stand-in's output leaves [0, 255] on both sides, so saturation is exercised.
    assert (expected == 0).any() and (expected == 255).any()
    np.testing.assert_array_equal(decoded, expected)


def test_tfci_layout_is_the_reference_clients(model: published.PublishedModel,
                                              image: np.ndarray) -> None:
    example = tf.train.Example.FromString(model.compress(image))
    features = example.features.feature
    assert sorted(features) == ["\x01", "\x02", "\x03", "MD"]
    assert list(features["MD"].bytes_list.value) == [NAME.encode("ascii")]
    # Sorted sender keys: floor, y_shape, y_string.
    assert features["\x01"].WhichOneof("kind") == "float_list"
    np.testing.assert_array_equal(features["\x01"].float_list.value, image.min(axis=(0, 1)))
    assert features["\x02"].WhichOneof("kind") == "int64_list"
    assert list(features["\x02"].int64_list.value) == [6, 8]
    assert features["\x03"].WhichOneof("kind") == "bytes_list"
    assert len(features["\x03"].bytes_list.value) == 1
    assert len(features["\x03"].bytes_list.value[0]) > 0


def test_write_and_read_tfci() -> None:
    tensors = [np.array([1.5, -2.0], np.float32), tf.constant([3, 4], tf.int32),
               tf.constant([b"ab", b""])]
    data = published.write_tfci("hific-mi", tensors)
    name, arrays = published.read_tfci(data)
    assert name == "hific-mi"
    assert [array.dtype for array in arrays] == [np.float32, np.int64, object]
    np.testing.assert_array_equal(arrays[0], [1.5, -2.0])
    np.testing.assert_array_equal(arrays[1], [3, 4])
    assert list(arrays[2]) == [b"ab", b""]
    _, cast = published.read_tfci(data, [tf.float64, tf.int32, tf.string])
    assert [array.dtype for array in cast] == [np.float64, np.int32, object]
    with pytest.raises(FormatError, match="stored as int64_list, expected bytes_list"):
        published.read_tfci(data, [tf.float32, tf.string, tf.string])
    with pytest.raises(FormatError, match="holds 3 tensors but the model hific-mi expects 2"):
        published.read_tfci(data, [tf.float32, tf.int32])
    empty = tf.train.Example()
    empty.features.feature["MD"].bytes_list.value.append(b"hific-mi")
    empty.features.feature["\x01"].SetInParent()
    _, arrays = published.read_tfci(empty.SerializeToString(), [tf.int32])
    assert arrays[0].dtype == np.int32 and arrays[0].shape == (0,)
    with pytest.raises(FormatError, match="tensor 1 is stored as an empty feature"):
        published.read_tfci(empty.SerializeToString())
    with pytest.raises(FormatError, match="outside the range of int8"):
        published.read_tfci(published.write_tfci("hific-mi", [[200]]), [tf.int8])
    with pytest.raises(ValueError, match="vectors only"):
        published.write_tfci("hific-mi", [np.zeros((2, 2), np.int32)])
    with pytest.raises(ValueError, match="dtype bool"):
        published.write_tfci("hific-mi", [np.zeros(2, bool)])


def test_files_of_another_model_or_format_are_refused(model: published.PublishedModel,
                                                      image: np.ndarray) -> None:
    _, tensors = published.read_tfci(model.compress(image))
    other = published.write_tfci("hific-hi", tensors)
    with pytest.raises(FormatError, match="from the model hific-hi, not hific-lo"):
        model.decompress(other)
    with pytest.raises(FormatError, match=r"not a serialized tf\.train\.Example"):
        model.decompress(b"\x89HFC\x01" + bytes(40))
    with pytest.raises(FormatError, match="no model name"):
        model.decompress(b"")
    with pytest.raises(FormatError, match="tensor 2 has 3 values"):
        model.decompress(published.write_tfci(NAME, [tensors[0], [6, 8, 1], tensors[2]]))


def test_corrupt_coded_data_is_refused(model: published.PublishedModel,
                                       image: np.ndarray) -> None:
    _, tensors = published.read_tfci(model.compress(image))
    with pytest.raises(FormatError, match="the model cannot decode it"):
        model.decompress(published.write_tfci(NAME, [tensors[0], [-6, 8], tensors[2]]))


def test_loading_through_the_environment_and_the_cache(
        published_dir: Path, tmp_path: Path, image: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(published.DIRECTORY_ENV, str(published_dir))
    assert published.metagraph_path(NAME) == published_dir / f"{NAME}.metagraph"
    monkeypatch.delenv(published.DIRECTORY_ENV)
    cached = tmp_path / "published" / f"{NAME}.metagraph"
    cached.parent.mkdir()
    cached.write_bytes((published_dir / f"{NAME}.metagraph").read_bytes())
    model = published.load_published(NAME, cache_directory=tmp_path, offline=True)
    np.testing.assert_array_equal(model.decompress(model.compress(image)),
                                  expected_reconstruction(image))


def test_missing_files_name_the_exact_path(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(published.DIRECTORY_ENV, raising=False)
    with pytest.raises(MissingResourceError) as caught:
        published.load_published("hific-mi", cache_directory=tmp_path, offline=True)
    assert str(tmp_path / "published" / "hific-mi.metagraph") in str(caught.value)
    assert f"{published.URL_PREFIX}/hific-mi.metagraph" in str(caught.value)
    monkeypatch.setenv(published.DIRECTORY_ENV, str(tmp_path / "mine"))
    with pytest.raises(MissingResourceError) as caught:
        published.load_published("hific-hi")
    assert str(tmp_path / "mine" / "hific-hi.metagraph") in str(caught.value)
    with pytest.raises(UserError, match="unknown published model 'hific-xx'"):
        published.load_published("hific-xx")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "hific-hi.metagraph").write_bytes(b"not a graph")
    with pytest.raises(UserError, match=r"hific-hi\.metagraph is not a serialized MetaGraphDef"):
        published.load_published("hific-hi")


def test_other_signature_layouts_are_refused(stand_in: tf.compat.v1.MetaGraphDef) -> None:
    def variant() -> tf.compat.v1.MetaGraphDef:
        copy = tf.compat.v1.MetaGraphDef()
        copy.CopyFrom(stand_in)
        return copy

    no_receiver = variant()
    del no_receiver.signature_def["receiver"]
    with pytest.raises(UserError, match="it has no 'receiver' signature"):
        published.PublishedModel(no_receiver, NAME)
    fewer_outputs = variant()
    del fewer_outputs.signature_def["sender"].outputs["floor"]
    with pytest.raises(UserError, match="'sender' has 2 outputs but 'receiver' 3 inputs"):
        published.PublishedModel(fewer_outputs, NAME)
    float_image = variant()
    float_image.signature_def["sender"].inputs["image"].dtype = tf.float32.as_datatype_enum
    with pytest.raises(UserError, match="input is float32"):
        published.PublishedModel(float_image, NAME)
    swapped = variant()
    receiver_inputs = swapped.signature_def["receiver"].inputs
    receiver_inputs["floor"].dtype = tf.string.as_datatype_enum
    with pytest.raises(UserError, match="tensor 1 is sent as float32 but received as string"):
        published.PublishedModel(swapped, NAME)


@pytest.mark.slow
def test_cli_codes_tfci_files_and_evaluate_takes_published_models(
        published_dir, image, tmp_path, monkeypatch, val768):
    from PIL import Image

    from conftest import run_cli

    monkeypatch.setenv(published.DIRECTORY_ENV, str(published_dir))
    source = tmp_path / "small.png"
    Image.fromarray(image).save(source)
    result = run_cli("compress", f"--model={NAME}", str(source))
    assert result.returncode == 0, result.stderr[-2000:]
    coded = tmp_path / "small.tfci"
    assert published.read_tfci(coded.read_bytes())[0] == NAME
    result = run_cli("decompress", f"--model={NAME}", "--overwrite", str(coded))
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "small.png")),
                                  expected_reconstruction(image))

    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / val768[0].name).write_bytes(val768[0].read_bytes())
    result = run_cli("evaluate", f"--images={photos}", f"--models={NAME}", "--codecs=jpeg",
                     f"--output={tmp_path / 'report'}", "--offline",
                     f"--cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "report" / f"{NAME}.json").is_file()
