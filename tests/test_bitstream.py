"""The .hfc layout, checked with an independent struct parser, and every way a file can be bad."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.codec import codec_from_model
from hific_tf.coding import bitstream

from conftest import make_tiny_model

HEADER = struct.Struct(">4sB16sIIII")


def fingerprint(data: bytes) -> bytes:
    return bytes(tf.fingerprint(tf.constant([data])).numpy()[0])


def rebuild(data: bytes, **fields) -> bytes:
    """Rewrites header fields of a valid file and recomputes its checksum."""
    names = ("magic", "version", "model_id", "height", "width", "z_length", "y_length")
    values = dict(zip(names, HEADER.unpack_from(data), strict=True))
    values.update(fields)
    prefix = HEADER.pack(*(values[n] for n in names)) + data[HEADER.size:-8]
    return prefix + fingerprint(prefix)


@pytest.fixture(scope="module")
def coded(tiny_model):
    image = np.random.default_rng(5).integers(0, 256, size=(15, 17, 3), dtype=np.uint8)
    return tiny_model.compress(image).numpy()


@pytest.fixture(scope="module")
def codec(tiny_model):
    return codec_from_model(tiny_model)


def test_layout_matches_the_documented_format(tiny_model, coded):
    magic, version, model_id, height, width, z_length, y_length = HEADER.unpack_from(coded)
    assert HEADER.size == bitstream.HEADER_BYTES == 37
    assert (magic, version, height, width) == (b"\x89HFC", 2, 15, 17)
    assert model_id == tiny_model.model_id.numpy() == tiny_model.fingerprint()
    assert len(coded) == 37 + z_length + y_length + 8 == bitstream.OVERHEAD_BYTES + z_length \
        + y_length
    assert coded[-8:] == fingerprint(coded[:-8])
    assert z_length > 0 and y_length > 0


def test_rebuild_helper_keeps_a_valid_file_valid(codec, coded):
    assert rebuild(coded) == coded
    assert codec.decompress(rebuild(coded)).shape == (15, 17, 3)


@pytest.mark.parametrize("tenth", range(10))
def test_truncated_files_are_refused(codec, coded, tenth):
    with pytest.raises(bitstream.FormatError, match=r"truncated|not a HiFiC"):
        codec.decompress(coded[:len(coded) * tenth // 10])


def test_every_single_flipped_byte_is_refused(codec, coded):
    for position in range(len(coded)):
        for mask in (0x01, 0x80):
            damaged = bytearray(coded)
            damaged[position] ^= mask
            with pytest.raises(bitstream.FormatError) as error:
                codec.decompress(bytes(damaged))
            assert "\n" not in str(error.value) and str(error.value), position


def test_flipped_payload_byte_is_a_checksum_mismatch(codec, coded):
    damaged = bytearray(coded)
    damaged[bitstream.HEADER_BYTES + 3] ^= 0x10
    with pytest.raises(bitstream.FormatError, match="checksum mismatch"):
        codec.decompress(bytes(damaged))


def test_wrong_magic(codec, coded):
    with pytest.raises(bitstream.FormatError, match="not a HiFiC compressed file"):
        codec.decompress(rebuild(coded, magic=b"\x89PNG"))
    with pytest.raises(bitstream.FormatError, match="not a HiFiC compressed file"):
        codec.decompress(b"hello, this is a text file and certainly not an image\n" * 3)


def test_future_format_version(codec, coded):
    with pytest.raises(bitstream.FormatError, match=r"unsupported format version 3 .*reads "
                                                    r"version 2"):
        codec.decompress(rebuild(coded, version=3))


def test_version_1_files_are_refused_as_older(codec, coded):
    with pytest.raises(bitstream.FormatError, match=r"^format version 1 is from an older "
                                                    r"hific-tf.*compress the image again$"):
        codec.decompress(rebuild(coded, version=1))


def test_file_from_a_model_with_other_weights(codec, tiny_model, coded):
    other = make_tiny_model(seed=1)
    foreign = other.compress(np.zeros((15, 17, 3), np.uint8)).numpy()
    with pytest.raises(bitstream.FormatError,
                       match=rf"written by model {other.model_id.numpy().hex()} but this model "
                             rf"is {tiny_model.model_id.numpy().hex()}"):
        codec.decompress(foreign)


@pytest.mark.parametrize("height,width", [(100_000, 100_000), (0, 17), (15, 16385)])
def test_header_claiming_an_impossible_size(codec, coded, height, width):
    with pytest.raises(bitstream.FormatError, match="out of range"):
        codec.decompress(rebuild(coded, height=height, width=width))


def test_inconsistent_lengths(codec, coded):
    z_length = HEADER.unpack_from(coded)[5]
    with pytest.raises(bitstream.FormatError, match="declares"):
        codec.decompress(rebuild(coded, z_length=z_length + 1))
    with pytest.raises(bitstream.FormatError, match="declares"):
        codec.decompress(rebuild(coded, y_length=2**32 - 1))
    with pytest.raises(bitstream.FormatError, match="declares"):
        codec.decompress(coded + b"\0")


def test_swapped_strings_with_valid_checksum_are_refused_not_crashing(codec, coded):
    # A crafted file whose checksum is right but whose coded data is not: the range
    # decoder's own sanity check turns it into the same kind of error.
    _, _, _, _, _, z_length, y_length = HEADER.unpack_from(coded)
    body = coded[bitstream.HEADER_BYTES:-8]
    swapped = body[z_length:] + body[:z_length]
    prefix = HEADER.pack(b"\x89HFC", bitstream.VERSION, coded[5:21], 15, 17, y_length,
                         z_length) + swapped
    with pytest.raises(bitstream.FormatError, match="its coded data does not decode") as error:
        codec.decompress(prefix + fingerprint(prefix))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("height,width", [(512, 512), (16384, 16384)])
def test_a_small_file_declaring_a_large_image_is_refused_at_once(codec, coded, height, width):
    """A crafted header (checksum rewritten) would otherwise make the decoder synthesise a
    huge image from a few bytes; a z string is never shorter than its information content."""
    with pytest.raises(bitstream.FormatError, match="z string is too short for the image size"):
        codec.decompress(rebuild(coded, height=height, width=width))


def test_the_z_string_bound_counts_the_most_probable_symbol_of_each_channel():
    from hific_tf.coding.entropy_coding import least_bits_per_position

    # Two channels (precision 4): the first's most probable symbol has 12 of 16, the second's
    # 8 of 16, so a position costs at least log2(16/12) + log2(16/8) bits.
    cdf = np.array([-4, 0, 12, 14, 16, -4, 0, 4, 8, 16], np.int32)
    assert least_bits_per_position(cdf) == pytest.approx(np.log2(16 / 12) + 1.0)
