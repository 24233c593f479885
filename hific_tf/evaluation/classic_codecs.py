"""Classic image codecs as baselines, behind one interface, with rate targeting by bisection.

JPEG, WebP, AVIF and JPEG 2000 run through Pillow; JPEG XL (`cjxl`/`djxl`) and HEVC intra in
HEIF (`heif-enc`/`heif-convert`, the stand-in for BPG) run as command-line tools, which
`make codec-tools` installs. Every codec takes and returns uint8 RGB [H, W, 3] images, and
`encode_at_bpp` searches a codec's quality knob for a target rate so that all codecs can be
compared with HiFiC at the same bits per pixel.

Chroma: each codec keeps its usual default, so that the baselines are the ones people use;
JPEG, WebP, AVIF and HEVC code chroma at 4:2:0, JPEG 2000 and JPEG XL at full resolution.
Effort: the registered codecs run at each encoder's default effort (libavif speed 6, cjxl
effort 7, x265 preset "slow"), the fair setting for comparisons; AvifCodec, JpegXlCodec and
HevcCodec take faster settings for quick runs. Rates count the whole file (headers and
container included), as HiFiC's rates do.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, UnidentifiedImageError, features

from hific_tf.errors import UserError

TOOL_TIMEOUT_S = 300.0
_STDERR_TAIL = 300
# Bisection gives up after this many steps (a float knob whose rate never gets within tolerance).
_MAX_STEPS = 30


class ClassicCodec(ABC):
    """A classic codec: encode(image, quality) → bytes and decode(bytes) → image.

    The quality knob runs from `quality_min` to `quality_max`; `integer_quality` says whether
    it takes integers only, and `higher_is_more_bits` which way the rate grows (JPEG XL's
    distance is the one knob where a higher value means fewer bits).
    """

    name: ClassVar[str]
    quality_min: ClassVar[float]
    quality_max: ClassVar[float]
    integer_quality: ClassVar[bool] = True
    higher_is_more_bits: ClassVar[bool] = True

    @abstractmethod
    def available(self) -> bool:
        """Whether this machine can run the codec."""

    @abstractmethod
    def require(self) -> None:
        """Raises UserError naming the fix if the codec cannot run here."""

    @abstractmethod
    def _encode(self, image: np.ndarray, quality: float) -> bytes: ...

    @abstractmethod
    def _decode(self, data: bytes) -> np.ndarray: ...

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        """Compresses uint8 RGB [H, W, 3] at `quality` (within the codec's range)."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} "
                             f"{list(image.shape)}")
        low, high = sorted((self.quality_min, self.quality_max))
        if not low <= quality <= high or (self.integer_quality and quality != int(quality)):
            kind = "an integer" if self.integer_quality else "a number"
            raise ValueError(f"{self.name} quality must be {kind} in [{low:g}, {high:g}], "
                             f"got {quality}")
        self.require()
        return self._encode(image, int(quality) if self.integer_quality else float(quality))

    def decode(self, data: bytes) -> np.ndarray:
        """Decompresses `data` from `encode` to uint8 RGB [H, W, 3]."""
        self.require()
        return self._decode(data)


class _PillowCodec(ClassicCodec):
    """A codec that Pillow encodes and decodes, if it was built with `feature`."""

    format: ClassVar[str]
    feature: ClassVar[str]

    @abstractmethod
    def _options(self, quality: float) -> dict[str, Any]:
        """Pillow's save options for this quality."""

    def available(self) -> bool:
        return bool(features.check(self.feature))

    def require(self) -> None:
        if not self.available():
            raise UserError(f"this Pillow has no {self.format} support; install a Pillow "
                            f"wheel that has it: pip install --upgrade pillow")

    def _encode(self, image: np.ndarray, quality: float) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=self.format, **self._options(quality))
        return buffer.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data), formats=[self.format]) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise UserError(f"not a {self.format} image Pillow can decode ({error})") from None


class JpegCodec(_PillowCodec):
    """Baseline JPEG (libjpeg-turbo); quality 1...100, 4:2:0 chroma (Pillow's default) and
    optimised Huffman tables, which save bits at no loss."""

    name = "jpeg"
    format = "JPEG"
    feature = "jpg"
    quality_min = 1
    quality_max = 100

    def _options(self, quality: float) -> dict[str, Any]:
        return {"quality": quality, "subsampling": "4:2:0", "optimize": True}


class WebpCodec(_PillowCodec):
    """Lossy WebP (libwebp); quality 0...100 at libwebp's default effort (method 4). Lossy
    WebP always codes chroma at 4:2:0."""

    name = "webp"
    format = "WEBP"
    feature = "webp"
    quality_min = 0
    quality_max = 100

    def _options(self, quality: float) -> dict[str, Any]:
        return {"quality": quality, "method": 4, "lossless": False}


class AvifCodec(_PillowCodec):
    """AVIF (libavif with libaom); quality 0...100, 4:2:0 chroma (the libavif default).

    `speed` is libavif's 0 (slowest, best) ... 10 (fastest); 6 is its default.
    """

    name = "avif"
    format = "AVIF"
    feature = "avif"
    quality_min = 0
    quality_max = 100

    def __init__(self, speed: int = 6) -> None:
        self.speed = speed

    def _options(self, quality: float) -> dict[str, Any]:
        return {"quality": quality, "subsampling": "4:2:0", "speed": self.speed}


class Jpeg2000Codec(_PillowCodec):
    """JPEG 2000 (OpenJPEG) codestream with the lossy 9/7 wavelet and no chroma subsampling.

    The knob is the rate OpenJPEG aims for, in bits per pixel (0.01...12, float): it becomes
    the compression ratio 24 / quality of one quality layer. OpenJPEG never exceeds it but
    stops short on images that need fewer bits, so the rate still needs measuring.
    """

    name = "jpeg2000"
    format = "JPEG2000"
    feature = "jpg_2000"
    quality_min = 0.01
    quality_max = 12.0
    integer_quality = False

    def _options(self, quality: float) -> dict[str, Any]:
        return {"quality_mode": "rates", "quality_layers": [24.0 / quality],
                "irreversible": True, "no_jp2": True}


class _ToolCodec(ClassicCodec):
    """A codec run as command-line tools on files in a temporary directory."""

    tools: ClassVar[tuple[str, ...]]
    package: ClassVar[str]
    suffix: ClassVar[str]

    def available(self) -> bool:
        return all(shutil.which(tool) for tool in self.tools)

    def require(self) -> None:
        for tool in self.tools:
            if shutil.which(tool) is None:
                raise UserError(f"{tool} not found ({self.name} needs Debian's {self.package}); "
                                f"run `make codec-tools`")

    @abstractmethod
    def _encode_command(self, png: Path, output: Path, quality: float) -> list[str]: ...

    @abstractmethod
    def _decode_command(self, data: Path, png: Path) -> list[str]: ...

    def _encode(self, image: np.ndarray, quality: float) -> bytes:
        with tempfile.TemporaryDirectory(prefix="hific-codec-") as directory:
            png, output = Path(directory, "input.png"), Path(directory, f"output{self.suffix}")
            Image.fromarray(image).save(png, compress_level=1)
            _run(self._encode_command(png, output, quality))
            return output.read_bytes()

    def _decode(self, data: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="hific-codec-") as directory:
            encoded, png = Path(directory, f"input{self.suffix}"), Path(directory, "output.png")
            encoded.write_bytes(data)
            _run(self._decode_command(encoded, png))
            with Image.open(png) as image:
                return np.asarray(image.convert("RGB"))


def _run(command: list[str]) -> None:
    """Runs a codec tool; a failure or timeout is a UserError with the tail of its stderr."""
    tool = command[0]
    try:
        completed = subprocess.run(command, capture_output=True, timeout=TOOL_TIMEOUT_S,
                                   check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"{tool} did not finish within {TOOL_TIMEOUT_S:g} s") from None
    if completed.returncode != 0:
        message = (completed.stderr or completed.stdout).decode(errors="replace")
        tail = " | ".join(line.strip() for line in message.strip().splitlines())
        raise UserError(f"{tool} failed (exit code {completed.returncode}): "
                        f"{tail[-_STDERR_TAIL:] or 'no message'}")


class JpegXlCodec(_ToolCodec):
    """JPEG XL through libjxl's cjxl/djxl; the knob is the Butteraugli distance 0.1...25
    (float, higher means fewer bits; 1 is "visually lossless"). VarDCT codes the XYB colour
    space without chroma subsampling.

    `effort` is cjxl's 1 (fastest) ... 9 (slowest, best); 7 is its default.
    """

    name = "jpegxl"
    tools = ("cjxl", "djxl")
    package = "libjxl-tools"
    suffix = ".jxl"
    quality_min = 0.1
    quality_max = 25.0
    integer_quality = False
    higher_is_more_bits = False

    def __init__(self, effort: int = 7) -> None:
        self.effort = effort

    def _encode_command(self, png: Path, output: Path, quality: float) -> list[str]:
        return ["cjxl", str(png), str(output), f"--distance={quality!r}",
                f"--effort={self.effort}", "--quiet"]

    def _decode_command(self, data: Path, png: Path) -> list[str]:
        return ["djxl", str(data), str(png), "--quiet"]


class HevcCodec(_ToolCodec):
    """HEVC intra (x265) in a HEIF file through libheif's heif-enc/heif-convert, the stand-in
    for BPG; quality 0...100, 4:2:0 chroma (libheif's and BPG's default).

    The x265 encoder is named explicitly so the file is HEVC, never AV1. The quality moves
    x265's QP in whole steps (as BPG's -q does), 12-20 % apart in rate, so some rate targets
    fall between two settings. `preset` is x265's ultrafast ... placebo; libheif's default is
    "slow".
    """

    name = "hevc"
    tools = ("heif-enc", "heif-convert")
    package = "libheif-examples"
    suffix = ".heic"
    quality_min = 0
    quality_max = 100

    def __init__(self, preset: str = "slow") -> None:
        self.preset = preset

    def _encode_command(self, png: Path, output: Path, quality: float) -> list[str]:
        return ["heif-enc", "-e", "x265", f"--quality={quality}", "-p", "chroma=420",
                "-p", f"preset={self.preset}", f"--output={output}", str(png)]

    def _decode_command(self, data: Path, png: Path) -> list[str]:
        return ["heif-convert", "--quiet", str(data), str(png)]


CLASSIC_CODECS: dict[str, ClassicCodec] = {
    codec.name: codec for codec in (JpegCodec(), WebpCodec(), AvifCodec(), Jpeg2000Codec(),
                                    JpegXlCodec(), HevcCodec())}


def get_codec(name: str) -> ClassicCodec:
    """The registered codec called `name`; UserError listing the names if there is none."""
    try:
        return CLASSIC_CODECS[name]
    except KeyError:
        raise UserError(f"unknown codec {name!r}; choose one of "
                        f"{', '.join(CLASSIC_CODECS)}") from None


@dataclass(frozen=True)
class Result:
    """An encoding at a rate target: the file, its rate, the knob setting, and whether the
    rate is within tolerance of the target (False: the nearest rate the codec reached)."""

    data: bytes
    bpp: float
    quality: float
    reached: bool


def _split(low: float, high: float, low_bpp: float, high_bpp: float, target_bpp: float,
           integer: bool) -> float:
    """The next knob setting to try between `low` and `high`, whose rates bracket the target.

    Integer knobs split in the middle. Float knobs (all positive) split where the line through
    the two ends in log(knob), log(rate) meets the target, since rates follow the knob roughly
    as a power law; the split is kept in the middle half so the bracket always shrinks.
    """
    if integer:
        return (low + high) // 2
    share = math.log(target_bpp / low_bpp) / math.log(high_bpp / low_bpp)
    return low * (high / low) ** min(max(share, 0.25), 0.75)


def encode_at_bpp(codec: ClassicCodec, image: np.ndarray, target_bpp: float,
                  tolerance: float = 0.05) -> Result:
    """Encodes `image` as close as `codec` gets to `target_bpp` by bisecting its quality knob.

    Integer knobs are bisected down to adjacent settings and the closest rate wins (so a
    codec whose rate jumps between adjacent settings may miss the tolerance); float knobs are
    bisected until the rate is within `tolerance` (relative) of the target. A target beyond the
    codec's range gives the nearest end of that range, with `reached` False.
    """
    if target_bpp <= 0 or tolerance < 0:
        raise ValueError(f"need target_bpp > 0 and tolerance >= 0, got {target_bpp}, "
                         f"{tolerance}")
    pixels = image.shape[0] * image.shape[1]
    encoded: dict[float, bytes] = {}

    def rate(quality: float) -> float:
        if quality not in encoded:
            encoded[quality] = codec.encode(image, quality)
        return 8 * len(encoded[quality]) / pixels

    def within(bpp: float) -> bool:
        return abs(bpp - target_bpp) <= tolerance * target_bpp

    fewest, most = codec.quality_min, codec.quality_max
    if not codec.higher_is_more_bits:
        fewest, most = most, fewest
    if rate(fewest) < target_bpp < rate(most):
        for _ in range(_MAX_STEPS):  # Invariant: rate(fewest) < target < rate(most).
            middle = _split(fewest, most, rate(fewest), rate(most), target_bpp,
                            codec.integer_quality)
            if middle in (fewest, most):
                break
            bpp = rate(middle)
            if within(bpp) and not codec.integer_quality:
                break
            if bpp < target_bpp:
                fewest = middle
            else:
                most = middle
    best = min(encoded, key=lambda quality: abs(rate(quality) - target_bpp))
    return Result(data=encoded[best], bpp=rate(best), quality=best, reached=within(rate(best)))
