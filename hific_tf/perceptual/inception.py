"""Inception pool features for FID and KID, from a TF-Hub handle or a local SavedModel.

The default is tensorflow-gan's Inception module (the one its FID and KID use). Where it
cannot be downloaded, place an extracted copy of the module in the cache folder
`<cache>/inception/` (it is then used automatically) or pass its path explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_gan as tfgan

from hific_tf.cache import MissingResourceError, cache_dir, offline_mode

INCEPTION_HANDLE = tfgan.eval.INCEPTION_TFHUB
INCEPTION_OUTPUT = tfgan.eval.INCEPTION_FINAL_POOL  # "pool_3", 2048 features
INCEPTION_SIZE = tfgan.eval.INCEPTION_DEFAULT_IMAGE_SIZE  # 299
CACHE_FOLDER = "inception"


def _placement_hint(folder: Path) -> str:
    return (f"download {INCEPTION_HANDLE}?tf-hub-format=compressed, extract it into "
            f"{folder} (so that {folder / 'saved_model.pb'} exists), or pass "
            "--inception=PATH to such a folder")


def resolve_inception(source: str | None = None, directory: str | Path | None = None,
                      offline: bool | None = None) -> str:
    """A loadable Inception: `source` if given, else the cached copy, else the TF-Hub
    handle (unless offline, where a missing copy is an error naming the folder)."""
    if source:
        if "://" not in source and not (Path(source) / "saved_model.pb").is_file():
            raise MissingResourceError(f"--inception={source} is not a SavedModel folder")
        return source
    folder = cache_dir(directory) / CACHE_FOLDER
    if (folder / "saved_model.pb").is_file():
        return str(folder)
    if offline_mode(offline):
        raise MissingResourceError(f"Inception weights not found (offline mode): "
                                   f"{_placement_hint(folder)}")
    return INCEPTION_HANDLE


class InceptionFeatures:
    """uint8 RGB images → Inception pool features [N, D], batch by batch."""

    def __init__(self, source: str, batch_size: int = 16) -> None:
        import tensorflow_hub as hub

        os.environ.setdefault("TFHUB_CACHE_DIR", str(cache_dir() / "tfhub"))
        try:
            self.module = hub.load(source)
        except Exception as error:  # network, format or file errors all mean "not usable"
            raise MissingResourceError(
                f"cannot load Inception from {source} ({type(error).__name__}): "
                f"{_placement_hint(cache_dir() / CACHE_FOLDER)}") from None
        self.batch_size = batch_size

    def _features(self, images: tf.Tensor) -> tf.Tensor:
        scaled = tf.cast(images, tf.float32) / 127.5 - 1.0
        resized = tf.image.resize(scaled, [INCEPTION_SIZE, INCEPTION_SIZE], method="bilinear")
        outputs = self.module(resized)
        if isinstance(outputs, dict):
            outputs = outputs[INCEPTION_OUTPUT]
        return tf.reshape(outputs, [tf.shape(outputs)[0], -1])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Features of uint8 [N, H, W, 3] images as float64 [N, D]."""
        if len(images) == 0:
            raise ValueError("no images to compute Inception features of")
        parts = [self._features(tf.constant(images[start:start + self.batch_size])).numpy()
                 for start in range(0, len(images), self.batch_size)]
        return np.concatenate(parts).astype(np.float64)
