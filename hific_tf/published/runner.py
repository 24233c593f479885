"""The paper's published models (hific-lo, -mi, -hi), run as their authors' graphs.

The authors released each model as a serialized tf.compat.v1 MetaGraphDef with the weights
baked in as constants and two signatures: "sender" (uint8 image [1, H, W, 3] → rank-1 tensors
to transmit) and "receiver" (those tensors → image). `PublishedModel` runs such a graph in
TF 2 and writes and reads the reference client's files (tfci.py), so a published model can be
used wherever a `hific_tf.codec.Codec` is (`compress` / `decompress` on bytes and NumPy images).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from hific_tf.coding.bitstream import FormatError
from hific_tf.configs import PUBLISHED_MODELS
from hific_tf.errors import UserError
from hific_tf.published import graph_safety
from hific_tf.published.tfci import TFCI_SUFFIX, feature_kind, read_tfci, write_tfci
from hific_tf.storage import cache
from hific_tf.storage.files import read_message
from hific_tf.storage.images import check_rgb_uint8

MODEL_NAMES = PUBLISHED_MODELS
URL_PREFIX = "https://storage.googleapis.com/tensorflow_compression/metagraphs"
DIRECTORY_ENV = "HIFIC_TF_PUBLISHED_DIR"
METAGRAPH_SUFFIX = ".metagraph"
SENDER = "sender"
RECEIVER = "receiver"
# The authors' coding (tensorflow-compression 1.3 as models/hific uses it): images padded to
# a multiple of 16, range coders of precision 16 and overflow width 4.
AUTHORS_PAD_MULTIPLE = 16
AUTHORS_PRECISION = 16
AUTHORS_OVERFLOW_WIDTH = 4


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
        kind = feature_kind(out_dtype)
        if kind is None or kind != feature_kind(in_dtype):
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

    file_suffix = TFCI_SUFFIX

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

    def set_memory_budget(self, _memory_budget: int | None) -> None:
        """Ignored: a published model's graph codes whole images (FileCodec's method)."""

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
