"""Published models and .tfci files, on a stand-in graph with the published signature layout.

The real hific-lo/-mi/-hi metagraphs are not available here, so the tests build one of the
same kind with the authors' structure at the tiny width (tests/hific_stand_in.py): constants
only, tensorflow-compression's range-coding ops in v1 while loops, signatures "sender" and
"receiver" with the keys channel:0..4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.coding.bitstream import FormatError
from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.configs import model_preset
from hific_tf.errors import UserError
from hific_tf.published import runner, tfci
from hific_tf.storage.cache import MissingResourceError

from hific_stand_in import build_stand_in, randomise, z_coding

NAME = "hific-lo"


@pytest.fixture(scope="module")
def source_model() -> HiFiC:
    """The Keras model whose weights the stand-in freezes."""
    return randomise(HiFiC(model_preset("tiny")).build_weights())


@pytest.fixture(scope="module")
def stand_in(source_model: HiFiC) -> tf.compat.v1.MetaGraphDef:
    return build_stand_in(source_model)


def expected_reconstruction(source_model: HiFiC, image: np.ndarray) -> np.ndarray:
    """What the stand-in must reconstruct, from the source model's Keras layers without a
    coder (coding is lossless): pad to 16, z and y quantised as the spec says, G cropped."""
    medians = z_coding(source_model)[2]
    hyperprior = source_model.hyperprior
    x = reflect_pad(tf.constant(image, tf.float32) / 255.0, 16)[tf.newaxis]
    y = source_model.encoder(x)
    z = hyperprior.analysis(y)
    z_hat = tf.floor(z + (0.5 - medians)) + medians
    mean = hyperprior.synthesis_mean(z_hat)[:, :y.shape[1], :y.shape[2]]
    y_hat = tf.floor(y - mean + 0.5) + mean
    output = source_model.generator(y_hat)[0, :image.shape[0], :image.shape[1]]
    return tf.saturate_cast(tf.round(tf.clip_by_value(output * 255.0, 0, 255)), tf.uint8).numpy()


def assert_within_one_level(decoded: np.ndarray, expected: np.ndarray) -> None:
    """The stand-in and the Keras model compute the same networks with different ops; a
    latent on a rounding boundary may flip, so a few pixels may differ by one level."""
    difference = np.abs(decoded.astype(int) - expected.astype(int))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 1e-3


@pytest.fixture(scope="module")
def published_dir(stand_in: tf.compat.v1.MetaGraphDef,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the stand-in as hific-lo.metagraph."""
    directory = tmp_path_factory.mktemp("published")
    (directory / f"{NAME}.metagraph").write_bytes(stand_in.SerializeToString())
    return directory


@pytest.fixture(scope="module")
def model(published_dir: Path) -> runner.PublishedModel:
    return runner.load_published(NAME, directory=published_dir)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A smooth 70 x 100 picture with some noise (sides not multiples of 64)."""
    rows, columns = np.mgrid[0:70, 0:100]
    base = np.stack([rows * 3, columns * 2, (rows + columns) * 1.5], axis=-1)
    noise = np.random.default_rng(3).normal(0, 6, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def test_stand_in_uses_the_range_coding_ops(stand_in: tf.compat.v1.MetaGraphDef) -> None:
    ops = {node.op for node in stand_in.graph_def.node}
    assert {"PmfToQuantizedCdf", "UnboundedIndexRangeEncode",
            "UnboundedIndexRangeDecode"} <= ops
    assert not {"VariableV2", "VarHandleOp"} & ops


def test_round_trip_gives_the_architectures_reconstruction(
        model: runner.PublishedModel, source_model: HiFiC, image: np.ndarray) -> None:
    data = model.compress(image)
    assert isinstance(data, bytes)
    decoded = model.decompress(data)
    assert decoded.dtype == np.uint8 and decoded.shape == image.shape
    np.testing.assert_array_equal(model.decompress(data), decoded)
    assert_within_one_level(decoded, expected_reconstruction(source_model, image))


def test_tfci_layout_is_the_reference_clients(model: runner.PublishedModel,
                                              image: np.ndarray) -> None:
    example = tf.train.Example.FromString(model.compress(image))
    features = example.features.feature
    assert sorted(features) == ["\x01", "\x02", "\x03", "\x04", "\x05", "MD"]
    assert list(features["MD"].bytes_list.value) == [NAME.encode("ascii")]
    # Sorted sender keys channel:0..4: y strings, z strings, image, y and z shapes.
    for key in ("\x01", "\x02"):
        assert features[key].WhichOneof("kind") == "bytes_list"
        assert len(features[key].bytes_list.value) == 1
        assert len(features[key].bytes_list.value[0]) > 0
    # 70 x 100 pads to 80 x 112: y 5 x 7, z 2 x 2.
    for key, shape in (("\x03", [70, 100]), ("\x04", [5, 7]), ("\x05", [2, 2])):
        assert features[key].WhichOneof("kind") == "int64_list"
        assert list(features[key].int64_list.value) == shape


def test_write_and_read_tfci() -> None:
    tensors = [np.array([1.5, -2.0], np.float32), tf.constant([3, 4], tf.int32),
               tf.constant([b"ab", b""])]
    data = tfci.write_tfci("hific-mi", tensors)
    name, arrays = tfci.read_tfci(data)
    assert name == "hific-mi"
    assert [array.dtype for array in arrays] == [np.float32, np.int64, object]
    np.testing.assert_array_equal(arrays[0], [1.5, -2.0])
    np.testing.assert_array_equal(arrays[1], [3, 4])
    assert list(arrays[2]) == [b"ab", b""]
    _, cast = tfci.read_tfci(data, [tf.float64, tf.int32, tf.string])
    assert [array.dtype for array in cast] == [np.float64, np.int32, object]
    with pytest.raises(FormatError, match="stored as int64_list, expected bytes_list"):
        tfci.read_tfci(data, [tf.float32, tf.string, tf.string])
    with pytest.raises(FormatError, match="holds 3 tensors but the model hific-mi expects 2"):
        tfci.read_tfci(data, [tf.float32, tf.int32])
    empty = tf.train.Example()
    empty.features.feature["MD"].bytes_list.value.append(b"hific-mi")
    empty.features.feature["\x01"].SetInParent()
    _, arrays = tfci.read_tfci(empty.SerializeToString(), [tf.int32])
    assert arrays[0].dtype == np.int32 and arrays[0].shape == (0,)
    with pytest.raises(FormatError, match="tensor 1 is stored as an empty feature"):
        tfci.read_tfci(empty.SerializeToString())
    with pytest.raises(FormatError, match="outside the range of int8"):
        tfci.read_tfci(tfci.write_tfci("hific-mi", [[200]]), [tf.int8])
    with pytest.raises(ValueError, match="vectors only"):
        tfci.write_tfci("hific-mi", [np.zeros((2, 2), np.int32)])
    with pytest.raises(ValueError, match="dtype bool"):
        tfci.write_tfci("hific-mi", [np.zeros(2, bool)])


def test_files_of_another_model_or_format_are_refused(model: runner.PublishedModel,
                                                      image: np.ndarray) -> None:
    _, tensors = tfci.read_tfci(model.compress(image))
    other = tfci.write_tfci("hific-hi", tensors)
    with pytest.raises(FormatError, match="from the model hific-hi, not hific-lo"):
        model.decompress(other)
    with pytest.raises(FormatError, match=r"not a serialized tf\.train\.Example"):
        model.decompress(b"\x89HFC\x01" + bytes(40))
    with pytest.raises(FormatError, match="no model name"):
        model.decompress(b"")
    with pytest.raises(FormatError, match="tensor 2 has 3 values"):
        model.decompress(tfci.write_tfci(NAME, [tensors[0], [b"a", b"b", b"c"],
                                                     *tensors[2:]]))


def test_corrupt_coded_data_is_refused(model: runner.PublishedModel,
                                       image: np.ndarray) -> None:
    _, tensors = tfci.read_tfci(model.compress(image))
    with pytest.raises(FormatError, match="the model cannot decode it"):
        model.decompress(tfci.write_tfci(NAME, [*tensors[:4], [-2, 2]]))


def test_loading_through_the_environment_and_the_cache(
        published_dir: Path, tmp_path: Path, image: np.ndarray, source_model: HiFiC,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runner.DIRECTORY_ENV, str(published_dir))
    assert runner.metagraph_path(NAME) == published_dir / f"{NAME}.metagraph"
    monkeypatch.delenv(runner.DIRECTORY_ENV)
    cached = tmp_path / "published" / f"{NAME}.metagraph"
    cached.parent.mkdir()
    cached.write_bytes((published_dir / f"{NAME}.metagraph").read_bytes())
    model = runner.load_published(NAME, cache_directory=tmp_path, offline=True)
    assert_within_one_level(model.decompress(model.compress(image)),
                            expected_reconstruction(source_model, image))


def test_missing_files_name_the_exact_path(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runner.DIRECTORY_ENV, raising=False)
    with pytest.raises(MissingResourceError) as caught:
        runner.load_published("hific-mi", cache_directory=tmp_path, offline=True)
    assert str(tmp_path / "published" / "hific-mi.metagraph") in str(caught.value)
    assert f"{runner.URL_PREFIX}/hific-mi.metagraph" in str(caught.value)
    monkeypatch.setenv(runner.DIRECTORY_ENV, str(tmp_path / "mine"))
    with pytest.raises(MissingResourceError) as caught:
        runner.load_published("hific-hi")
    assert str(tmp_path / "mine" / "hific-hi.metagraph") in str(caught.value)
    with pytest.raises(UserError, match="unknown published model 'hific-xx'"):
        runner.load_published("hific-xx")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "hific-hi.metagraph").write_bytes(b"not a graph")
    with pytest.raises(UserError, match=r"hific-hi\.metagraph is not a serialized MetaGraphDef"):
        runner.load_published("hific-hi")


def test_other_signature_layouts_are_refused(stand_in: tf.compat.v1.MetaGraphDef) -> None:
    def variant() -> tf.compat.v1.MetaGraphDef:
        copy = tf.compat.v1.MetaGraphDef()
        copy.CopyFrom(stand_in)
        return copy

    no_receiver = variant()
    del no_receiver.signature_def["receiver"]
    with pytest.raises(UserError, match="it has no 'receiver' signature"):
        runner.PublishedModel(no_receiver, NAME)
    fewer_outputs = variant()
    del fewer_outputs.signature_def["sender"].outputs["channel:4"]
    with pytest.raises(UserError, match="'sender' has 4 outputs but 'receiver' 5 inputs"):
        runner.PublishedModel(fewer_outputs, NAME)
    float_image = variant()
    float_image.signature_def["sender"].inputs["input_image"].dtype = tf.float32.as_datatype_enum
    with pytest.raises(UserError, match="input is float32"):
        runner.PublishedModel(float_image, NAME)
    swapped = variant()
    receiver_inputs = swapped.signature_def["receiver"].inputs
    receiver_inputs["channel:2"].dtype = tf.string.as_datatype_enum
    with pytest.raises(UserError, match="tensor 3 is sent as int32 but received as string"):
        runner.PublishedModel(swapped, NAME)


@pytest.mark.slow
def test_cli_codes_tfci_files_and_evaluate_takes_published_models(
        published_dir, image, source_model, tmp_path, photos):
    from PIL import Image

    from conftest import run_cli

    source = tmp_path / "small.png"
    Image.fromarray(image).save(source)
    result = run_cli("compress", f"--model={NAME}", f"--published_dir={published_dir}",
                     str(source))
    assert result.returncode == 0, result.stderr[-2000:]
    coded = tmp_path / "small.tfci"
    assert tfci.read_tfci(coded.read_bytes())[0] == NAME
    result = run_cli("decompress", f"--model={NAME}", f"--published_dir={published_dir}",
                     "--overwrite", str(coded))
    assert result.returncode == 0, result.stderr[-2000:]
    assert_within_one_level(np.asarray(Image.open(tmp_path / "small.png")),
                            expected_reconstruction(source_model, image))

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / photos[0].name).write_bytes(photos[0].read_bytes())
    result = run_cli("evaluate", f"--images={folder}", f"--models={NAME}", "--codecs=jpeg",
                     f"--published_dir={published_dir}",
                     f"--output={tmp_path / 'report'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "report" / f"{NAME}.json").is_file()


@pytest.mark.slow
def test_demo_codes_with_a_published_model_and_reports_on_it(published_dir, model, tmp_path,
                                                             photos):
    """`demo --models=hific-lo` on the stand-in: .tfci files and their decodes, the report,
    the table and the figure with the published model, the classic codecs aimed at its rate
    and twice it. Two 192x192 crops keep it fast (NIQE needs 192; no FID/256 patch fits)."""
    import json

    from PIL import Image

    from hific_tf.storage.images import read_image

    from conftest import run_cli

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in photos[:2]:
        Image.fromarray(read_image(path)[100:292, 200:392]).save(folder / path.name)
    output = tmp_path / "demo"
    result = run_cli("demo", f"--models={NAME}", f"--published_dir={published_dir}",
                     f"--input={folder}", f"--output={output}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for path in photos[:2]:
        data = (output / NAME / f"{path.stem}.tfci").read_bytes()
        np.testing.assert_array_equal(model.decompress(data),
                                      read_image(output / NAME / f"{path.stem}.png"))
    summaries = json.loads((output / "report" / "summary.json").read_text())["summaries"]
    assert {s["codec"] for s in summaries} == {NAME, "jpeg", "webp", "avif"}
    rate = next(s["bpp"] for s in summaries if s["codec"] == NAME)
    for codec in ("jpeg", "webp", "avif"):
        targets = sorted(s["target_bpp"] for s in summaries if s["codec"] == codec)
        assert targets == pytest.approx([rate, 2 * rate])
    table = [line.split() for line in result.stdout.splitlines()]
    assert [NAME, "model", f"{rate:.4f}"] in [row[:3] for row in table]
    # The figure: the original, hific-lo and the three classic codecs, 300 pixels each.
    with Image.open(output / "report" / "figure.png") as figure:
        assert figure.size == (5 * 300, 330)
    assert f"{NAME}'s mean rate" in result.stdout
    assert str(output / NAME) in result.stdout and ".tfci files" in result.stdout
