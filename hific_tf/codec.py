"""A codec as users see it: bytes and NumPy images, wrapped around the model's tf.functions.

`load_codec` opens a checkpoint directory or an exported SavedModel; both expose the same
`compress` / `decompress` tf.functions, so files are identical whichever is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf

from hific_tf.coding import bitstream
from hific_tf.coding.model import HiFiC, note_whole_image
from hific_tf.configs import ModelConfig
from hific_tf.errors import UserError
from hific_tf.storage import checkpoints
from hific_tf.storage.images import check_rgb_uint8


class CodingFunctions(Protocol):
    """What a HiFiC model and a loaded SavedModel have in common."""

    compress: tf.types.experimental.GenericFunction
    decompress: tf.types.experimental.GenericFunction


class FileCodec(Protocol):
    """What every codec of a model does, whichever kind of model it is: this project's own
    (`Codec`, `.hfc` files), a published graph (`PublishedModel`) or a checkpoint converted
    from one (`TfciCoder`, both `.tfci` files). Callers never branch on which it is."""

    name: str
    file_suffix: str

    def compress(self, _image: np.ndarray) -> bytes:
        """uint8 [H, W, 3] → the bytes of a file."""

    def decompress(self, _data: bytes) -> np.ndarray:
        """The bytes of a file → uint8 [H, W, 3]; FormatError if they are bad."""

    def set_memory_budget(self, _memory_budget: int | None) -> None:
        """Sets the memory (bytes, whole process) that coding aims to stay within."""


class Codec:
    """Compresses uint8 RGB images to `.hfc` bytes and back."""

    file_suffix = bitstream.FILE_SUFFIX

    def __init__(self, functions: CodingFunctions, name: str) -> None:
        self.functions = functions
        self.name = name

    def set_memory_budget(self, memory_budget: int | None) -> None:
        """Sets the memory (bytes, whole process) that coding aims to stay within; models
        without tiling (published ones, SavedModels exported before it) ignore it."""
        settings = getattr(self.functions, "tile_settings", None)
        if settings is not None:
            from hific_tf.coding.tiling import configure

            configure(settings, memory_budget)

    def compress(self, image: np.ndarray) -> bytes:
        """uint8 [H, W, 3] → the bytes of an `.hfc` file."""
        image = check_rgb_uint8(image)
        try:
            return self.functions.compress(tf.constant(image)).numpy()
        except tf.errors.InvalidArgumentError as error:
            raise UserError(bitstream.check_message(error) or error.message) from None

    def decompress(self, data: bytes) -> np.ndarray:
        """The bytes of an `.hfc` file → uint8 [H, W, 3]; FormatError if they are bad."""
        try:
            return self.functions.decompress(tf.constant(data, tf.string)).numpy()
        except tf.errors.InvalidArgumentError as error:
            message = bitstream.check_message(error)
            raise bitstream.FormatError(
                message or "the file is corrupt: its coded data does not decode") from None


def is_saved_model(path: str | Path) -> bool:
    """True if `path` is a SavedModel directory."""
    return (Path(path) / "saved_model.pb").is_file()


def load_codec(model: str | Path, published_dir: str | Path | None = None,
               memory_budget: int | None = None) -> FileCodec:
    """Opens a model as a codec: a bundled model's name, a published model's name
    (hific-lo/-mi/-hi, which write .tfci files; looked up in `published_dir`, else as
    `hific_tf.published.runner.metagraph_path` says), a weights file (.npz, as `hific-tf bundle`
    and training snapshots write it), a SavedModel or a checkpoint directory (one converted
    from a published model writes .tfci files too); `memory_budget` (bytes,
    default 2 GiB) sizes the tiles of large images. Published graphs and SavedModels are
    programs: their ops are checked before any runs (`hific_tf.published.graph_safety`)."""
    codec = _open_codec(model, published_dir)
    if memory_budget is not None:
        codec.set_memory_budget(memory_budget)
    return codec


def _open_codec(model: str | Path, published_dir: str | Path | None) -> FileCodec:
    from hific_tf.published import converted, runner
    from hific_tf.storage import zoo
    if str(model) in runner.MODEL_NAMES:
        return runner.load_published(str(model), directory=published_dir)
    if str(model) in zoo.bundled_names():
        return Codec(zoo.load_bundled(str(model)), name=str(model))
    path = Path(model)
    if not path.exists():
        raise UserError(f"model {model} does not exist; pass a bundled model name, a "
                        "weights file, a checkpoint directory or an exported SavedModel "
                        "directory")
    if path.is_file() and path.suffix == zoo.SUFFIX:
        return Codec(zoo.load_file(path), name=path.stem)
    if converted.writes_tfci(path):
        return converted.load_converted(path)
    if is_saved_model(path):
        import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

        from hific_tf.published.graph_safety import check_saved_model

        check_saved_model(path)  # Before TensorFlow reads any of it.
        try:
            loaded = tf.saved_model.load(str(path))
        except (tf.errors.OpError, ValueError, OSError) as error:
            raise UserError(f"cannot load the SavedModel {path}: {str(error)[:200]}") from None
        if hasattr(loaded, "model_config"):  # SavedModels exported before it: ChannelNorm.
            note_whole_image(ModelConfig.from_json(loaded.model_config.numpy().decode()))
        return Codec(loaded, name=path.name)
    return Codec(checkpoints.load_for_coding(path), name=path.name)


def codec_from_model(model: HiFiC, name: str = "hific") -> Codec:
    """Wraps an in-memory model, preparing it for coding if needed."""
    if model.model_id is None:
        model.prepare_for_coding()
    return Codec(model, name=name)
