"""The `.hfc` compressed file format, written and parsed with TensorFlow ops.

Being TensorFlow ops, the same code runs eagerly, inside the model's tf.functions and inside
an exported SavedModel, so a serving process writes and checks whole files by itself.

Layout, version 2 (integers big-endian):

    offset  size  field
    0       4     magic b"\\x89HFC"
    4       1     format version (2)
    5       16    model identifier (hash of the architecture, weights and coding tables)
    21      4     image height, 1 ... MAX_SIDE
    25      4     image width, 1 ... MAX_SIDE
    29      4     length of the z string in bytes
    33      4     length of the y string in bytes
    37      ...   z string, then y string
    end-8   8     checksum: tf.fingerprint (farmhash64) of every byte before it

Every field is validated, in that order, before anything is decoded.

Version 2 (hific-tf 0.2) codes with stored tables, precision-16 CDFs and the exact integer h_s
(entropy_coding.py); version 1 files came from models whose tables were recomputed at every
load and are refused with a message saying so.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import tensorflow as tf

from hific_tf.errors import UserError

MAGIC = b"\x89HFC"
VERSION = 2
MODEL_ID_BYTES = 16
HEADER_BYTES = 37
CHECKSUM_BYTES = 8
OVERHEAD_BYTES = HEADER_BYTES + CHECKSUM_BYTES
MAX_SIDE = 16384
FILE_SUFFIX = ".hfc"

# Marks the messages of this module's checks inside TensorFlow's error text.
_ERROR_TAG = "HFC: "
_BYTE_STRINGS = [bytes([value]) for value in range(256)]
_HEX_STRINGS = [f"{value:02x}" for value in range(256)]


class FormatError(UserError):
    """A compressed file that cannot be decoded: corrupt, truncated or from another model."""


class Parsed(NamedTuple):
    """The validated contents of a compressed file."""

    height: tf.Tensor
    width: tf.Tensor
    z_string: tf.Tensor
    y_string: tf.Tensor


def bytes_to_string(values: tf.Tensor) -> tf.Tensor:
    """Packs a uint8 vector into a scalar string of those bytes."""
    return tf.strings.reduce_join(
        tf.gather(tf.constant(_BYTE_STRINGS), tf.cast(values, tf.int32)))


def _hex(values: tf.Tensor) -> tf.Tensor:
    return tf.strings.reduce_join(tf.gather(tf.constant(_HEX_STRINGS), tf.cast(values, tf.int32)))


def _uint32(value: tf.Tensor) -> tf.Tensor:
    value = tf.cast(value, tf.int64)
    shifts = tf.constant([24, 16, 8, 0], tf.int64)
    return bytes_to_string(tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, shifts), 255))


def _read_uint32(header: tf.Tensor, offset: int) -> tf.Tensor:
    values = tf.cast(header[offset:offset + 4], tf.int64)
    return tf.reduce_sum(tf.bitwise.left_shift(values, tf.constant([24, 16, 8, 0], tf.int64)))


def checksum(payload: tf.Tensor) -> tf.Tensor:
    """The 8-byte checksum of a scalar string (farmhash64 via tf.fingerprint)."""
    return bytes_to_string(tf.fingerprint(tf.reshape(payload, [1]))[0])


def pack(model_id: tf.Tensor, height: tf.Tensor, width: tf.Tensor, z_string: tf.Tensor,
         y_string: tf.Tensor) -> tf.Tensor:
    """Builds a whole file (scalar string) from its fields."""
    payload = tf.strings.join([
        MAGIC, bytes([VERSION]), model_id, _uint32(height), _uint32(width),
        _uint32(tf.strings.length(z_string)), _uint32(tf.strings.length(y_string)),
        z_string, y_string])
    return tf.strings.join([payload, checksum(payload)])


def check(condition: tf.Tensor, *message: str | tf.Tensor) -> tf.Operation:
    """An in-graph assertion whose failure `check_message` turns back into one line."""
    return tf.debugging.Assert(condition, [tf.strings.join([_ERROR_TAG, *message])])


def _str(value: tf.Tensor) -> tf.Tensor:
    return tf.strings.as_string(value)


def unpack(data: tf.Tensor, model_id: tf.Tensor) -> Parsed:
    """Validates a file against the format and `model_id`; returns its fields.

    Each check gates the next through control dependencies, so a bad file stops at the first
    field that is wrong and nothing is allocated from an unchecked value.
    """
    size = tf.cast(tf.strings.length(data), tf.int64)
    # Padding makes the header slice safe to take from any input, even an empty one.
    padded = tf.strings.join([data, b"\0" * HEADER_BYTES])
    header = tf.io.decode_raw(tf.strings.substr(padded, 0, HEADER_BYTES), tf.uint8)
    version = tf.cast(header[4], tf.int64)
    file_id = tf.strings.substr(padded, 5, MODEL_ID_BYTES)
    height = _read_uint32(header, 21)
    width = _read_uint32(header, 25)
    z_length = _read_uint32(header, 29)
    y_length = _read_uint32(header, 33)
    declared_size = OVERHEAD_BYTES + z_length + y_length

    checks = [
        lambda: check(
            tf.logical_and(size >= len(MAGIC),
                           tf.equal(tf.strings.substr(padded, 0, len(MAGIC)), MAGIC)),
            "not a HiFiC compressed file (wrong magic bytes; expected a file written by "
            "hific-tf compress)"),
        lambda: check(
            tf.equal(version, VERSION),
            tf.where(version < VERSION,
                     tf.strings.join(["format version ", _str(version), " is from an older "
                                      "hific-tf, whose files are not portable across "
                                      "machines; decode it with hific-tf 0.1 and compress "
                                      "the image again"]),
                     tf.strings.join(["unsupported format version ", _str(version),
                                      f" (this hific-tf reads version {VERSION}): the file is "
                                      "corrupt or newer than this hific-tf"]))),
        lambda: check(
            size >= OVERHEAD_BYTES,
            "file is truncated: ", _str(size), " bytes, shorter than the ",
            str(OVERHEAD_BYTES), "-byte header and checksum"),
        lambda: check(
            tf.equal(size, declared_size),
            "file is truncated or corrupt: its header declares ", _str(declared_size),
            " bytes but it has ", _str(size)),
        lambda: check(
            tf.equal(tf.strings.substr(data, size - CHECKSUM_BYTES, CHECKSUM_BYTES),
                     checksum(tf.strings.substr(data, tf.constant(0, tf.int64),
                                                size - CHECKSUM_BYTES))),
            "checksum mismatch: the file is corrupt"),
        lambda: check(
            tf.equal(file_id, model_id),
            "the file was written by model ", _hex(tf.io.decode_raw(file_id, tf.uint8)),
            " but this model is ", _hex(tf.io.decode_raw(model_id, tf.uint8)),
            ": decode it with the model and weights that wrote it"),
        lambda: check(
            tf.reduce_all([height >= 1, height <= MAX_SIDE, width >= 1, width <= MAX_SIDE]),
            "image size ", _str(height), "x", _str(width), " in the header is out of range "
            f"(1 to {MAX_SIDE} pixels per side): the file is corrupt"),
    ]
    dependencies: list[tf.Operation] = []
    for make_check in checks:
        with tf.control_dependencies(dependencies):
            dependencies = [make_check()]
    with tf.control_dependencies(dependencies):
        z_start = tf.constant(HEADER_BYTES, tf.int64)
        z_string = tf.strings.substr(data, z_start, z_length)
        y_string = tf.strings.substr(data, z_start + z_length, y_length)
        return Parsed(height=tf.identity(height), width=tf.identity(width),
                      z_string=z_string, y_string=y_string)


def check_message(error: tf.errors.OpError) -> str | None:
    """The one-line message of a failed check of this module's kind, or None."""
    match = re.search(re.escape(_ERROR_TAG) + r"(.*?)\]", error.message)
    return match.group(1) if match else None
