"""Checkpoints converted from a published graph, which code `.tfci` files exactly as that
graph does: the graph's coding tables (`GraphCoding`) beside a Keras HiFiC (`TfciCoder`).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from hific_tf.coding.bitstream import FormatError
from hific_tf.coding.entropy_coding import ZTables, scale_thresholds, table_index
from hific_tf.coding.model import HiFiC, reflect_pad
from hific_tf.errors import UserError
from hific_tf.published.runner import AUTHORS_PAD_MULTIPLE, MODEL_NAMES
from hific_tf.published.tfci import TFCI_SUFFIX, read_tfci, write_tfci
from hific_tf.storage.images import check_rgb_uint8

# In a checkpoint directory converted from a published graph: that graph's coding tables.
PUBLISHED_TABLES_FILE = "published_tables.npz"


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

    file_suffix = TFCI_SUFFIX

    def __init__(self, model: HiFiC, coding: GraphCoding, name: str) -> None:
        import tensorflow_compression  # noqa: F401  Registers the range-coding ops.

        self.model = model.build_weights()
        self.coding = coding
        self.name = name
        table = np.asarray(model.config.scale_table(), np.float32)
        self.lowest_scale = tf.constant(table[0])
        self.scale_thresholds = tf.constant(
            scale_thresholds(table, model.config.latent_channels, integer_step=None))
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
        return mean, table_index(tf.maximum(scale, self.lowest_scale), self.scale_thresholds)

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

    def set_memory_budget(self, _memory_budget: int | None) -> None:
        """Ignored: the `.tfci` coder codes whole images, as the graph does (FileCodec's
        method)."""

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
