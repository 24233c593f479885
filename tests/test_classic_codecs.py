"""Classic baseline codecs: rate targeting, round trips and the errors a user can meet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hific_tf.errors import UserError
from hific_tf.evaluation import classic_codecs
from hific_tf.evaluation.classic_codecs import (
    CLASSIC_CODECS,
    AvifCodec,
    ClassicCodec,
    HevcCodec,
    JpegXlCodec,
    Result,
    encode_at_bpp,
    get_codec,
)
from hific_tf.storage.images import read_image

TARGETS_BPP = (0.3, 1.0)
# Per codec: the codec, how many photos, and the share of (photo, target) cases that must land
# within 5 %. Rate targeting runs on every photo where encoding is fast; AVIF, JPEG XL and
# HEVC take up to a second per encode at their default effort, so they run at faster settings
# on two photos. Float knobs reach every target in range. Integer knobs step the rate between
# adjacent settings; HEVC's quality moves x265's QP in whole steps, 12-20 % apart in rate (as
# BPG's does), so there no share is promised and every miss must be the nearest rate instead.
RATE_CASES = {
    "jpeg": (CLASSIC_CODECS["jpeg"], 5, 0.75),
    "webp": (CLASSIC_CODECS["webp"], 5, 0.75),
    "jpeg2000": (CLASSIC_CODECS["jpeg2000"], 5, 1.0),
    "avif": (AvifCodec(speed=8), 2, 0.75),
    "jpegxl": (JpegXlCodec(effort=3), 2, 1.0),
    "hevc": (HevcCodec(preset="fast"), 2, 0.0),
}
# Three settings per codec from few to many bits, for the PSNR check.
RISING_QUALITIES = {
    "jpeg": (10, 50, 90),
    "webp": (10, 50, 90),
    "avif": (20, 50, 80),
    "jpeg2000": (0.1, 0.5, 2.0),
    "jpegxl": (8.0, 2.0, 0.5),
    "hevc": (20, 50, 80),
}


@pytest.fixture(scope="module")
def val768_images(val768: list[Path]) -> list[np.ndarray]:
    """The five shared validation photos the rate-targeting shares were set on."""
    assert len(val768) == 5
    return [read_image(path) for path in val768]


@pytest.fixture(scope="module")
def image(photos: list[Path]) -> np.ndarray:
    """One shipped photo (otters among rocks and water: detail and smooth areas)."""
    return read_image(photos[0])


def usable(codec: ClassicCodec) -> ClassicCodec:
    """The codec, or a skip whose reason names the fix (run make codec-tools)."""
    try:
        codec.require()
    except UserError as error:
        pytest.skip(str(error))
    return codec


def bpp_of(data: bytes, image: np.ndarray) -> float:
    return 8 * len(data) / (image.shape[0] * image.shape[1])


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def assert_nearest(codec: ClassicCodec, image: np.ndarray, result: Result,
                   target: float) -> None:
    """A missed target: no setting gets closer. Either the result is at the end of the knob's
    range, or (integer knobs) the next rate past it overshoots the target by more."""
    fewest, most = codec.quality_min, codec.quality_max
    if not codec.higher_is_more_bits:
        fewest, most = most, fewest
    end = most if result.bpp < target else fewest
    if result.quality == end:
        return
    assert codec.integer_quality, f"{codec.name}: a float knob stopped short of the target"
    step = 1 if end > result.quality else -1
    quality, beyond = result.quality, result.bpp
    while beyond == result.bpp and quality != end:  # Adjacent settings may share a rate.
        quality += step
        beyond = bpp_of(codec.encode(image, quality), image)
    assert (beyond - target) * (result.bpp - target) < 0, "the target is not bracketed"
    assert abs(beyond - target) >= abs(result.bpp - target)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RATE_CASES))
def test_rate_targeting_lands_within_five_percent(val768_images, name):
    codec, count, share = RATE_CASES[name]
    usable(codec)
    results = []
    for image in val768_images[:count]:
        for target in TARGETS_BPP:
            result = encode_at_bpp(codec, image, target, tolerance=0.05)
            assert result.bpp == bpp_of(result.data, image)
            assert result.data == codec.encode(image, result.quality)
            assert result.reached == (abs(result.bpp - target) <= 0.05 * target)
            if not result.reached:
                assert_nearest(codec, image, result, target)
            results.append(result)
    reached = sum(result.reached for result in results)
    assert reached >= share * len(results), [round(result.bpp, 4) for result in results]


def test_targets_out_of_reach_give_the_nearest_end(image):
    for codec in (CLASSIC_CODECS["jpeg"], CLASSIC_CODECS["jpeg2000"]):
        low = encode_at_bpp(codec, image, 0.001)
        assert (low.quality, low.reached) == (codec.quality_min, False)
        assert low.bpp == bpp_of(codec.encode(image, codec.quality_min), image) > 0.001
        high = encode_at_bpp(codec, image, 100.0)
        assert (high.quality, high.reached) == (codec.quality_max, False)
        assert high.bpp == bpp_of(codec.encode(image, codec.quality_max), image) < 100.0


def test_webp_reports_a_rate_it_cannot_reach(val768_images):
    # Lossy WebP tops out below 1 bpp on this smooth wallpaper (mate_Storm).
    codec, image = CLASSIC_CODECS["webp"], val768_images[3]
    result = encode_at_bpp(codec, image, 1.0)
    assert (result.quality, result.reached) == (100, False)
    assert result.bpp == bpp_of(codec.encode(image, 100), image) < 0.95


def test_jpegxl_distance_runs_towards_fewer_bits(image):
    codec = usable(JpegXlCodec(effort=3))
    image = image[:128, :128]
    low = encode_at_bpp(codec, image, 0.001)
    high = encode_at_bpp(codec, image, 100.0)
    assert (low.quality, low.reached, high.quality, high.reached) == (25.0, False, 0.1, False)
    assert low.bpp < high.bpp


@pytest.mark.parametrize("name", list(RISING_QUALITIES))
def test_round_trip_psnr_rises_with_quality(image, name):
    codec = usable(get_codec(name))
    scores = []
    for quality in RISING_QUALITIES[name]:
        decoded = codec.decode(codec.encode(image, quality))
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        scores.append(psnr(image, decoded))
    assert scores[0] < scores[1] < scores[2], scores
    assert scores[2] > 32.0, scores


def test_hevc_writes_hevc_not_av1(image):
    data = usable(get_codec("hevc")).encode(image[:64, :64], 50)
    assert data[4:8] == b"ftyp" and data[8:12] == b"heic"


def test_unknown_codec_lists_the_names():
    with pytest.raises(UserError) as error:
        get_codec("bpg")
    message = str(error.value)
    assert "'bpg'" in message
    assert all(name in message for name in
               ("jpeg", "webp", "avif", "jpeg2000", "jpegxl", "hevc"))


@pytest.mark.parametrize("name,tool", [("jpegxl", "cjxl"), ("hevc", "heif-enc")])
def test_missing_tool_names_make_codec_tools(monkeypatch, tmp_path, name, tool):
    monkeypatch.setenv("PATH", str(tmp_path))
    codec = get_codec(name)
    assert not codec.available()
    with pytest.raises(UserError, match=rf"^{tool} not found .*run `make codec-tools`$"):
        codec.encode(np.zeros((8, 8, 3), np.uint8), codec.quality_max)


@pytest.mark.parametrize("name,tool", [("jpegxl", "djxl"), ("hevc", "heif-convert")])
def test_tool_failure_shows_its_message(name, tool):
    codec = usable(get_codec(name))
    with pytest.raises(UserError, match=rf"^{tool} failed \(exit code 1\): .+"):
        codec.decode(b"not an image")


def test_tool_timeout_is_a_user_error(monkeypatch):
    codec = usable(get_codec("jpegxl"))
    monkeypatch.setattr(classic_codecs, "TOOL_TIMEOUT_S", 1e-4)
    with pytest.raises(UserError, match=r"^cjxl did not finish within 0\.0001 s$"):
        codec.encode(np.zeros((64, 64, 3), np.uint8), 1.0)


def test_pillow_decode_of_damaged_data_is_a_user_error():
    with pytest.raises(UserError, match="not a JPEG image"):
        get_codec("jpeg").decode(b"\xff\xd8 damaged")


@pytest.mark.parametrize("name,quality", [("jpeg", 0), ("jpeg", 50.5), ("jpegxl", 30.0)])
def test_quality_outside_the_knob_is_rejected(name, quality):
    with pytest.raises(ValueError, match="quality must be"):
        get_codec(name).encode(np.zeros((8, 8, 3), np.uint8), quality)
