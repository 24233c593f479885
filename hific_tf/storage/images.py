"""Reading and writing image files: the boundary where any input becomes 8-bit RGB.

Greyscale, palette, RGBA and 16-bit files are converted here, with a warning wherever
information is dropped (alpha, bit depth), so the codec itself only sees uint8 [H, W, 3].
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.Image import DecompressionBombError

from hific_tf.coding.bitstream import MAX_SIDE
from hific_tf.errors import UserError
from hific_tf.storage.files import write_atomic

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm",
                  ".pgm", ".pnm")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageConversionWarning(UserWarning):
    """Information was dropped while converting an input to 8-bit RGB."""


def _warn(path: Path, what: str) -> None:
    warnings.warn(f"{path}: {what}", ImageConversionWarning, stacklevel=3)


def _is_16_bit_png(data: bytes) -> bool:
    # The IHDR chunk follows the signature; its bit depth is byte 24 of the file.
    return data.startswith(_PNG_SIGNATURE) and len(data) > 24 and data[24] == 16


def _to_rgb(samples: np.ndarray, path: Path) -> np.ndarray:
    """[H, W] or [H, W, C] uint8 samples with C in 1...4 → [H, W, 3]."""
    if samples.ndim == 2:
        samples = samples[..., np.newaxis]
    channels = samples.shape[-1]
    if channels in (2, 4):
        _warn(path, "alpha channel dropped (colour kept as stored)")
        samples = samples[..., :channels - 1]
    if samples.shape[-1] == 1:
        samples = np.repeat(samples, 3, axis=-1)
    return np.ascontiguousarray(samples)


def _decode_16_bit_png(data: bytes, path: Path) -> np.ndarray:
    import tensorflow as tf  # Only this rare path needs TensorFlow's PNG decoder.

    samples = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
    _warn(path, "16-bit samples reduced to 8 bits")
    return _to_rgb(np.round(samples.astype(np.float64) / 257.0).astype(np.uint8), path)


def _decode_with_pillow(data: bytes, path: Path) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise UserError(f"{path}: image is {width}x{height}; hific-tf codes images from "
                            f"1x1 to {MAX_SIDE}x{MAX_SIDE}")
        image = ImageOps.exif_transpose(image)
        mode = image.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            _warn(path, "16-bit samples reduced to 8 bits")
            samples = np.asarray(image, dtype=np.float64)
            return _to_rgb(np.clip(np.round(samples / 257.0), 0, 255).astype(np.uint8), path)
        if mode == "F":
            raise UserError(f"{path}: floating-point images are not supported; "
                            "save it as 8- or 16-bit PNG")
        has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (
            mode == "P" and "transparency" in image.info)
        image = image.convert("RGBA" if has_alpha else "RGB")
        return _to_rgb(np.asarray(image), path)


def read_image(path: str | Path) -> np.ndarray:
    """Reads any common image file as uint8 RGB [H, W, 3]; raises UserError if it can't."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        if _is_16_bit_png(data):
            return _decode_16_bit_png(data, path)
        return _decode_with_pillow(data, path)
    except UserError:
        raise
    except DecompressionBombError:
        raise UserError(f"{path}: the image is larger than hific-tf codes "
                        f"({MAX_SIDE}x{MAX_SIDE} at most)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image file that can be read "
                        f"(expected one of {', '.join(IMAGE_SUFFIXES)})") from None
    except Exception as error:  # Truncated or corrupt image data, from Pillow or TF.
        raise UserError(f"{path}: the image data is damaged or truncated "
                        f"({type(error).__name__}); re-export the image") from None


def check_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """`image` as an array, or UserError unless it is uint8 RGB [H, W, 3]."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise UserError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} "
                        f"{list(image.shape)}")
    return image


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, 3] → PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | Path, image: np.ndarray, overwrite: bool = False) -> None:
    """Writes uint8 [H, W, 3] as PNG atomically."""
    write_atomic(path, encode_png(image), overwrite=overwrite)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
