"""The paper's published models (hific-lo, -mi, -hi) and the reference client's `.tfci` files.

The authors released each model as a serialized tf.compat.v1 MetaGraphDef with the weights
baked in as constants and two signatures: "sender" (uint8 image [1, H, W, 3] → rank-1 tensors
to transmit) and "receiver" (those tensors → image). `PublishedModel` runs such a graph in
TF 2 and writes and reads the reference client's files, so a published model can be used
wherever a `hific_tf.codec.Codec` is (`compress` / `decompress` on bytes and NumPy images).

A `.tfci` file is a serialized tf.train.Example: feature "MD" holds the model name, features
chr(1), chr(2), ... the sender's outputs in sorted signature-key order (integers as
int64_list, floats as float_list, strings as bytes_list). Every tensor is a vector; the
receiver's inputs are filled in its own sorted key order, cast to the dtypes its signature
declares, and are not reshaped, as in the reference client.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from hific_tf.coding.bitstream import FormatError
from hific_tf.coding.entropy_coding import ZTables
from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.errors import UserError
from hific_tf.published import graph_safety
from hific_tf.storage import cache
from hific_tf.storage.files import read_message
from hific_tf.storage.images import check_rgb_uint8

MODEL_NAMES = ("hific-lo", "hific-mi", "hific-hi")
URL_PREFIX = "https://storage.googleapis.com/tensorflow_compression/metagraphs"
DIRECTORY_ENV = "HIFIC_TF_PUBLISHED_DIR"
METAGRAPH_SUFFIX = ".metagraph"
TFCI_SUFFIX = ".tfci"
SENDER = "sender"
RECEIVER = "receiver"
MODEL_FEATURE = "MD"
# The authors' coding (tensorflow-compression 1.3 as models/hific uses it): images padded to
# a multiple of 16, range coders of precision 16 and overflow width 4.
AUTHORS_PAD_MULTIPLE = 16
AUTHORS_PRECISION = 16
AUTHORS_OVERFLOW_WIDTH = 4
# In a checkpoint directory converted from a published graph: that graph's coding tables.
PUBLISHED_TABLES_FILE = "published_tables.npz"


def published_resource(name: str) -> cache.Resource:
    """The cache entry of the published model `name` (one of MODEL_NAMES)."""
    if name not in MODEL_NAMES:
        raise UserError(f"unknown published model {name!r}; choose one of "
                        f"{', '.join(MODEL_NAMES)}")
    return cache.Resource(
        name=f"published/{name}{METAGRAPH_SUFFIX}",
        url=f"{URL_PREFIX}/{name}{METAGRAPH_SUFFIX}",
        description=f"the published HiFiC model {name}")


def metagraph_path(name: str, directory: str | Path | None = None,
                   cache_directory: str | Path | None = None,
                   offline: bool | None = None) -> Path:
    """The local MetaGraphDef file of `name`.

    `directory` (else $HIFIC_TF_PUBLISHED_DIR) is a folder where the user placed
    `<name>.metagraph` files; it is used as is, never downloaded into. Without it the file
    comes from the project's cache (`hific_tf.storage.cache.fetch`), downloaded unless offline.
    """
    resource = published_resource(name)
    chosen = directory or os.environ.get(DIRECTORY_ENV)
    if not chosen:
        return cache.fetch(resource, cache_directory, offline=offline)
    path = Path(chosen).expanduser() / f"{name}{METAGRAPH_SUFFIX}"
    if not path.is_file():
        raise cache.MissingResourceError(
            f"{resource.description} not found at {path} (the published-models folder given "
            f"by --published_dir / ${DIRECTORY_ENV}): download {resource.url} and place it "
            "there")
    return path


def load_published(name: str, directory: str | Path | None = None,
                   cache_directory: str | Path | None = None,
                   offline: bool | None = None) -> PublishedModel:
    """Opens the published model `name` (see `metagraph_path` for where it is looked up)."""
    return PublishedModel.from_file(
        metagraph_path(name, directory, cache_directory, offline), name=name)


def _kind(dtype: tf.DType) -> str | None:
    """Which list of a tf.train.Feature holds values of `dtype`, or None if none can."""
    if dtype.is_integer:
        return "int64_list"
    if dtype.is_floating:
        return "float_list"
    if dtype == tf.string:
        return "bytes_list"
    return None


_NUMPY_KINDS = {"i": "int64_list", "u": "int64_list", "f": "float_list", "S": "bytes_list",
                "O": "bytes_list"}


def write_tfci(model_name: str, tensors: Sequence[np.ndarray | tf.Tensor]) -> bytes:
    """The bytes of a `.tfci` file holding `tensors` (vectors, in feature order) for
    `model_name`, laid out as the reference client writes them."""
    example = tf.train.Example()
    example.features.feature[MODEL_FEATURE].bytes_list.value.append(model_name.encode("ascii"))
    for number, tensor in enumerate(tensors, start=1):
        values = tensor.numpy() if isinstance(tensor, tf.Tensor) else np.asarray(tensor)
        if values.ndim != 1:
            raise ValueError(f"tensor {number} has shape {list(values.shape)}; a .tfci file "
                             "holds vectors only")
        kind = _NUMPY_KINDS.get(values.dtype.kind)
        if kind is None:
            raise ValueError(f"tensor {number} has dtype {values.dtype}, which a .tfci file "
                             "cannot hold")
        getattr(example.features.feature[chr(number)], kind).value.extend(values.tolist())
    return example.SerializeToString()


def read_tfci(data: bytes, dtypes: Sequence[tf.DType] | None = None,
              ) -> tuple[str, list[np.ndarray]]:
    """The model name and tensors of a `.tfci` file; FormatError if it is not one.

    With `dtypes`, there must be exactly that many tensors, each stored in the list that
    dtype uses, and they are returned cast to it (as the reference client does with the
    receiver's input dtypes); without, ints come back as int64, floats as float32, strings
    as object arrays of bytes.
    """
    example = tf.train.Example()
    try:
        example.ParseFromString(bytes(data))
    except DecodeError:
        raise FormatError("not a .tfci file: the data is not a serialized "
                          "tf.train.Example; pass a file written by the published "
                          "model's compress") from None
    features = example.features.feature
    names = features[MODEL_FEATURE].bytes_list.value if MODEL_FEATURE in features else []
    if len(names) != 1:
        raise FormatError(f"not a .tfci file: it has no model name (feature "
                          f"{MODEL_FEATURE!r}); pass a file written by the published "
                          "model's compress")
    try:
        model_name = names[0].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("not a .tfci file: its model name is not ASCII") from None
    count = len(features) - 1
    if sorted(features) != sorted([MODEL_FEATURE, *(chr(n) for n in range(1, count + 1))]):
        raise FormatError(f"the .tfci file is corrupt: its features are not chr(1) to "
                          f"chr({count}) besides {MODEL_FEATURE!r}")
    if dtypes is not None and len(dtypes) != count:
        raise FormatError(f"the .tfci file holds {count} tensors but the model "
                          f"{model_name} expects {len(dtypes)}; the file is corrupt")
    tensors = []
    for number in range(1, count + 1):
        feature = features[chr(number)]
        kind = feature.WhichOneof("kind")
        if dtypes is None:
            dtype = {"int64_list": tf.int64, "float_list": tf.float32,
                     "bytes_list": tf.string}.get(kind)
        else:
            dtype = tf.as_dtype(dtypes[number - 1])
            # An empty tensor leaves the feature with no list at all, as the reference writes it.
            kind = kind or _kind(dtype)
        if dtype is None or kind != _kind(dtype):
            raise FormatError(f"the .tfci file is corrupt: tensor {number} is stored as "
                              f"{kind or 'an empty feature'}, expected "
                              f"{_kind(dtype) if dtype else 'a value list'}")
        values = list(getattr(feature, kind).value)
        if dtype == tf.string:
            tensors.append(np.array(values, dtype=object))
            continue
        if dtype.is_integer and values and not dtype.min <= min(values) <= max(values) <= dtype.max:
            raise FormatError(f"the .tfci file is corrupt: tensor {number} holds values "
                              f"outside the range of {dtype.name}")
        tensors.append(np.array(values, dtype=dtype.as_numpy_dtype))
    return model_name, tensors


def _layout_error(name: str, problem: str) -> UserError:
    return UserError(f"{name} is not a published-model graph: {problem} (expected signatures "
                     f"{SENDER!r}: uint8 image [1, H, W, 3] → vectors, {RECEIVER!r}: those "
                     "vectors → image); use an original .metagraph file")


def _sorted_infos(signature: tf.compat.v1.SignatureDef, which: str) -> list:
    mapping = getattr(signature, which)
    return [mapping[key] for key in sorted(mapping)]


def _check_layout(meta_graph: tf.compat.v1.MetaGraphDef, name: str) -> None:
    """Refuses graphs whose signatures do not have the published models' layout."""
    for key in (SENDER, RECEIVER):
        if key not in meta_graph.signature_def:
            raise _layout_error(name, f"it has no {key!r} signature")
    sender = meta_graph.signature_def[SENDER]
    receiver = meta_graph.signature_def[RECEIVER]
    if len(sender.inputs) != 1 or len(receiver.outputs) != 1:
        raise _layout_error(name, f"{SENDER!r} has {len(sender.inputs)} inputs and "
                                  f"{RECEIVER!r} {len(receiver.outputs)} outputs, not one each")
    image, = sender.inputs.values()
    shape = tf.TensorShape(image.tensor_shape)
    if tf.as_dtype(image.dtype) != tf.uint8 or not shape.is_compatible_with([1, None, None, 3]):
        raise _layout_error(name, f"the {SENDER!r} input is {tf.as_dtype(image.dtype).name} "
                                  f"{shape}, not a uint8 image")
    output, = receiver.outputs.values()
    output_dtype = tf.as_dtype(output.dtype)
    if not (output_dtype.is_floating or output_dtype.is_integer):
        raise _layout_error(name, f"the {RECEIVER!r} output is {output_dtype.name}")
    sent = _sorted_infos(sender, "outputs")
    received = _sorted_infos(receiver, "inputs")
    if not sent or len(sent) != len(received):
        raise _layout_error(name, f"{SENDER!r} has {len(sent)} outputs but {RECEIVER!r} "
                                  f"{len(received)} inputs")
    for number, (out, into) in enumerate(zip(sent, received, strict=True), start=1):
        out_dtype, in_dtype = tf.as_dtype(out.dtype), tf.as_dtype(into.dtype)
        kind = _kind(out_dtype)
        if kind is None or kind != _kind(in_dtype):
            raise _layout_error(name, f"tensor {number} is sent as {out_dtype.name} but "
                                      f"received as {in_dtype.name}")
        if not tf.TensorShape(out.tensor_shape).is_compatible_with([None]):
            raise _layout_error(name, f"tensor {number} is not a vector")


def read_metagraph(path: str | Path) -> tf.compat.v1.MetaGraphDef:
    """Parses a `.metagraph` file, with one clear line when it is not one."""
    return read_message(path, tf.compat.v1.MetaGraphDef(), "is not a serialized MetaGraphDef; "
                        "delete it and place the original .metagraph file there")


class PublishedModel:
    """A published MetaGraphDef as a codec: uint8 [H, W, 3] ↔ bytes of a `.tfci` file."""

    def __init__(self, meta_graph: tf.compat.v1.MetaGraphDef, name: str,
                 source: str | None = None) -> None:
        """Checks the graph (its ops, `hific_tf.published.graph_safety`; its signatures) before
        any of it is imported; `source` names it in messages (default: NAME.metagraph)."""
        import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

        graph_safety.check_meta_graph(meta_graph, source or f"{name}{METAGRAPH_SUFFIX}")
        _check_layout(meta_graph, name)
        self.name = name
        imported = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.train.import_meta_graph(meta_graph), [])
        self.sender = self._prune(imported, meta_graph.signature_def[SENDER])
        self.receiver = self._prune(imported, meta_graph.signature_def[RECEIVER])
        receiver_inputs = _sorted_infos(meta_graph.signature_def[RECEIVER], "inputs")
        self.receiver_dtypes = [tf.as_dtype(info.dtype) for info in receiver_inputs]
        self.receiver_shapes = [tf.TensorShape(info.tensor_shape) for info in receiver_inputs]

    def _prune(self, imported: tf.types.experimental.ConcreteFunction,
               signature: tf.compat.v1.SignatureDef) -> tf.types.experimental.ConcreteFunction:
        graph = imported.graph
        try:
            inputs = [graph.as_graph_element(info.name)
                      for info in _sorted_infos(signature, "inputs")]
            outputs = [graph.as_graph_element(info.name)
                       for info in _sorted_infos(signature, "outputs")]
        except (KeyError, ValueError) as error:
            raise _layout_error(self.name, f"a signature names a missing tensor ({error})"
                                ) from None
        return imported.prune(inputs, outputs)

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> PublishedModel:
        """Loads a `.metagraph` file; `name` (default: the file's stem) goes into files."""
        path = Path(path)
        return cls(read_metagraph(path), name or path.name.removesuffix(METAGRAPH_SUFFIX),
                   source=path.name)

    def compress(self, image: np.ndarray) -> bytes:
        """uint8 [H, W, 3] → the bytes of a `.tfci` file."""
        image = check_rgb_uint8(image)
        try:
            tensors = self.sender(tf.constant(image[None]))
        except tf.errors.InvalidArgumentError as error:
            size = f"{image.shape[0]}x{image.shape[1]}"
            if "paddings must be less than" in error.message:
                raise UserError(
                    f"{self.name} cannot code a {size} image: its graph pads by mirroring to a "
                    f"multiple of {AUTHORS_PAD_MULTIPLE}, which needs each side to be at least "
                    f"{AUTHORS_PAD_MULTIPLE // 2 + 1} pixels; convert the model (hific-tf "
                    "convert) to code smaller images") from None
            lines = [line for line in error.message.splitlines() if line.strip()]
            raise UserError(f"{self.name} cannot code this {size} image: "
                            f"{lines[-1].strip()[:200] if lines else 'the graph failed'}"
                            ) from None
        return write_tfci(self.name, tensors)

    def decompress(self, data: bytes) -> np.ndarray:
        """The bytes of a `.tfci` file → uint8 [H, W, 3]; FormatError if they are bad."""
        model_name, arrays = read_tfci(data, self.receiver_dtypes)
        if model_name != self.name:
            raise FormatError(f"the .tfci file is from the model {model_name}, not "
                              f"{self.name}; decompress it with {model_name}")
        for number, (values, shape) in enumerate(zip(arrays, self.receiver_shapes,
                                                     strict=True), start=1):
            if not shape.is_compatible_with(values.shape):
                raise FormatError(f"the .tfci file is corrupt: tensor {number} has "
                                  f"{len(values)} values, {self.name} expects {shape}")
        tensors = [tf.constant(values, dtype) for values, dtype
                   in zip(arrays, self.receiver_dtypes, strict=True)]
        try:
            output, = self.receiver(*tensors)
        except tf.errors.InvalidArgumentError as error:
            raise FormatError(f"the .tfci file is corrupt: the model cannot decode it "
                              f"({error.message[:120]})") from None
        if output.shape.rank != 4 or output.shape[0] != 1 or output.shape[-1] != 3:
            raise FormatError(f"{self.name} decoded an output of shape {output.shape}, not an "
                              "image [1, H, W, 3]; the file is corrupt")
        if output.dtype.is_floating:
            output = tf.round(output)
        return tf.saturate_cast(output[0], tf.uint8).numpy()


@dataclasses.dataclass
class CoderTables:
    """One range coder's tables as the authors' ops take them."""

    cdf: np.ndarray  # int32 [rows, width], each row's CDF zero-padded
    cdf_length: np.ndarray  # int32 [rows]
    offset: np.ndarray  # int32 [rows], the smallest symbol of each row


@dataclasses.dataclass
class GraphCoding:
    """What a published graph codes with: tables, settings, z's medians and its name."""

    z: CoderTables
    y: CoderTables
    z_medians: np.ndarray  # float32 [C_z]; z's symbols are floor(z + 0.5 - median)
    precision: int
    overflow_width: int

    def z_tables(self) -> ZTables:
        """z's tables in the layout of this project's own coder (`.hfc` files): per channel
        minus the precision and the CDF, the smallest symbols, and the medians as the
        quantisation offsets (round(z - median) is the graph's floor(z + 0.5 - median))."""
        rows = [np.concatenate([[-self.precision], cdf[:length]])
                for cdf, length in zip(self.z.cdf, self.z.cdf_length, strict=True)]
        return ZTables(np.concatenate(rows).astype(np.int32), self.z.offset.astype(np.int32),
                       self.z_medians.astype(np.float32))

    def to_bytes(self, model_name: str) -> bytes:
        """The tables as an .npz file, with the name its files carry."""
        arrays = {f"{key}_{field}": getattr(getattr(self, key), field)
                  for key in ("z", "y") for field in ("cdf", "cdf_length", "offset")}
        buffer = io.BytesIO()
        np.savez(buffer, z_medians=self.z_medians, precision=self.precision,
                 overflow_width=self.overflow_width,
                 model_name=np.frombuffer(model_name.encode("ascii"), np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path: Path) -> tuple[GraphCoding, str]:
        """Inverse of `to_bytes`: the tables and the model name; one clear line if damaged."""
        try:
            with np.load(path) as stored:
                def tables(key: str) -> CoderTables:
                    return CoderTables(*(stored[f"{key}_{field}"].astype(np.int32)
                                         for field in ("cdf", "cdf_length", "offset")))

                coding = cls(tables("z"), tables("y"), stored["z_medians"].astype(np.float32),
                             int(stored["precision"]), int(stored["overflow_width"]))
                return coding, bytes(stored["model_name"]).decode("ascii")
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as error:
            raise UserError(f"{path} is damaged ({error}); convert the published model "
                            "again") from None


class Sent(NamedTuple):
    """The sender's symbols, the values it floors to get them, and the file's tensors."""

    y_symbols: np.ndarray
    z_symbols: np.ndarray
    y_unrounded: np.ndarray  # y - mean + 0.5
    z_unrounded: np.ndarray  # z + 0.5 - median
    tensors: list[np.ndarray]


class TfciCoder:
    """A Keras HiFiC with a published graph's coding tables, coding `.tfci` files exactly as
    that graph's sender and receiver do (HIFIC_SPEC.md, "What the authors' code does"):

    reflect-pad to a multiple of 16; z's symbols floor(z + 0.5 - median); h_s's outputs
    cropped to y's size; scales lower-bounded at the table's first entry and indexed by the
    next greater or equal entry; y's symbols floor(y - mean + 0.5); the graph's CDF tables
    with UnboundedIndexRangeEncode/Decode at its precision and overflow width. The file holds
    y's strings, z's strings, the image shape, y's shape and z's shape.
    """

    def __init__(self, model: HiFiC, coding: GraphCoding, name: str) -> None:
        import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

        self.model = model.build_weights()
        self.coding = coding
        self.name = name
        self.scale_table = tf.constant(model.config.scale_table(), tf.float32)
        self.medians = tf.constant(coding.z_medians, tf.float32)

    def _coder(self, function, tables: CoderTables, *args: tf.Tensor) -> tf.Tensor:
        from tensorflow_compression.python.ops import gen_ops

        return getattr(gen_ops, function)(
            *args, tables.cdf, tables.cdf_length, tables.offset,
            precision=self.coding.precision, overflow_width=self.coding.overflow_width)

    def _z_indexes(self, shape: tf.Tensor) -> tf.Tensor:
        channels = tf.shape(self.medians)[0]
        return tf.broadcast_to(tf.range(channels), tf.concat([shape, [channels]], 0))

    def _mean_and_index(self, z_hat: tf.Tensor, y_shape: tf.Tensor
                        ) -> tuple[tf.Tensor, tf.Tensor]:
        hyperprior = self.model.hyperprior
        mean = hyperprior.synthesis_mean(z_hat)[:, :y_shape[0], :y_shape[1]]
        scale = hyperprior.synthesis_scale(z_hat)[:, :y_shape[0], :y_shape[1]]
        scale = tf.maximum(scale, self.scale_table[0])
        flat = tf.reshape(scale, [1, -1])
        index = tf.searchsorted(self.scale_table[tf.newaxis, :-1], flat, side="left",
                                out_type=tf.int32)
        return mean, tf.reshape(index, tf.shape(scale))

    def symbols(self, image: np.ndarray) -> Sent:
        """What the sender computes for a uint8 [H, W, 3] image (see `Sent`)."""
        image = tf.constant(check_rgb_uint8(image))
        x = reflect_pad(tf.cast(image, tf.float32) / 255.0, AUTHORS_PAD_MULTIPLE)[tf.newaxis]
        y = self.model.encoder(x)
        z = self.model.hyperprior.analysis(y)
        z_unrounded = z + (0.5 - self.medians)
        z_symbols = tf.cast(tf.floor(z_unrounded), tf.int32)
        y_shape, z_shape = tf.shape(y)[1:3], tf.shape(z)[1:3]
        z_string = self._coder("unbounded_index_range_encode", self.coding.z, z_symbols[0],
                               self._z_indexes(z_shape))
        mean, index = self._mean_and_index(tf.cast(z_symbols, tf.float32) + self.medians,
                                           y_shape)
        y_unrounded = y - mean + 0.5
        y_symbols = tf.cast(tf.floor(y_unrounded), tf.int32)
        y_string = self._coder("unbounded_index_range_encode", self.coding.y, y_symbols[0],
                               index[0])
        tensors = [tf.reshape(y_string, [1]), tf.reshape(z_string, [1]),
                   tf.shape(image)[:2], y_shape, z_shape]
        return Sent(y_symbols.numpy(), z_symbols.numpy(), y_unrounded.numpy(),
                    z_unrounded.numpy(), [np.asarray(tensor.numpy()) for tensor in tensors])

    def compress(self, image: np.ndarray) -> bytes:
        """uint8 [H, W, 3] → the bytes of a `.tfci` file."""
        return write_tfci(self.name, self.symbols(image).tensors)

    def receive(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        """The receiver's float output on [0, 255] for a file's five tensors."""
        y_strings, z_strings, image_shape, y_shape, z_shape = (
            tf.constant(tensor, dtype) for tensor, dtype in
            zip(tensors, (tf.string, tf.string, tf.int32, tf.int32, tf.int32), strict=True))
        z_symbols = self._coder("unbounded_index_range_decode", self.coding.z, z_strings[0],
                                self._z_indexes(z_shape))
        z_hat = tf.cast(z_symbols, tf.float32)[tf.newaxis] + self.medians
        mean, index = self._mean_and_index(z_hat, y_shape)
        y_symbols = self._coder("unbounded_index_range_decode", self.coding.y, y_strings[0],
                                index[0])
        y_hat = tf.cast(y_symbols, tf.float32)[tf.newaxis] + mean
        output = self.model.generator(y_hat)[0, :image_shape[0], :image_shape[1]]
        return tf.clip_by_value(output * 255.0, 0.0, 255.0).numpy()

    def decompress(self, data: bytes) -> np.ndarray:
        """The bytes of a `.tfci` file → uint8 [H, W, 3]; FormatError if they are bad."""
        model_name, tensors = read_tfci(data, [tf.string, tf.string, tf.int32, tf.int32,
                                               tf.int32])
        if model_name != self.name:
            raise FormatError(f"the .tfci file is from the model {model_name}, not "
                              f"{self.name}; decompress it with {model_name}")
        shapes = [tensor.shape for tensor in tensors]
        if shapes != [(1,), (1,), (2,), (2,), (2,)]:
            raise FormatError(f"the .tfci file is corrupt: its tensors have shapes {shapes}")
        try:
            output = self.receive(tensors)
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            raise FormatError(f"the .tfci file is corrupt: the model cannot decode it "
                              f"({str(error).strip().splitlines()[0][:120]})") from None
        return tf.saturate_cast(tf.round(output), tf.uint8).numpy()


def writes_tfci(model: str | Path) -> bool:
    """Whether the model argument `model` codes `.tfci` files: a published model's name, or a
    checkpoint directory converted from one (it holds the graph's tables)."""
    return str(model) in MODEL_NAMES or (Path(model) / PUBLISHED_TABLES_FILE).is_file()


def save_converted(model: HiFiC, coding: GraphCoding, name: str, directory: str | Path) -> None:
    """Writes a checkpoint directory (architecture, weights) that also holds the graph's
    coding tables, so it codes `.tfci` files as the graph does (`load_converted`), and the
    coding tables of `.hfc` files with z's tables from the graph (for export)."""
    from hific_tf.storage.checkpoints import save_model, store_tables
    from hific_tf.storage.files import write_atomic

    prefix = save_model(model, directory)
    write_atomic(Path(directory) / PUBLISHED_TABLES_FILE, coding.to_bytes(name), overwrite=True)
    # The tables for this project's own .hfc files and SavedModels: z's from the graph.
    coding_model = HiFiC(model.config).build_weights()
    coding_model.set_weights(model.get_weights())
    store_tables(directory, prefix,
                 coding_model.prepare_for_coding(z_tables=coding.z_tables()).coding_tables)


def load_converted(directory: str | Path) -> TfciCoder:
    """The `.tfci` coder of a directory written by `save_converted`."""
    from hific_tf.storage.checkpoints import load_model

    coding, name = GraphCoding.from_file(Path(directory) / PUBLISHED_TABLES_FILE)
    return TfciCoder(load_model(directory), coding, name)
