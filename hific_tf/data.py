"""tf.data input pipelines: image files or TFRecords → random rescaled crops in [0, 1]."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
from absl import logging
from PIL import Image

from hific_tf.errors import UserError
from hific_tf.images import IMAGE_SUFFIXES

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
# TFRecord files hold tf.train.Examples whose "image" feature is an encoded JPEG or PNG.
TFRECORD_IMAGE_KEY = "image"


def _expand(source: str) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.suffix.lower() in IMAGE_SUFFIXES + TFRECORD_SUFFIXES)
    return sorted(Path(p) for p in glob.glob(str(path)))


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:  # Any failure to parse means the file is skipped.
        return False


def find_sources(sources: Sequence[str]) -> tuple[list[str], list[str]]:
    """Image files and TFRecord files named by folders or glob patterns.

    Image files that Pillow cannot parse are skipped, and their count is logged.
    """
    images, records, skipped = [], [], []
    for source in sources:
        matches = _expand(source)
        if not matches:
            raise UserError(f"no training files match {source!r}; pass folders or glob "
                            "patterns of JPEG/PNG files or TFRecords")
        for path in matches:
            if path.suffix.lower() in TFRECORD_SUFFIXES:
                records.append(str(path))
            elif _readable(path):
                images.append(str(path))
            else:
                skipped.append(str(path))
    if skipped:
        logging.warning("skipped %d unreadable image files, e.g. %s", len(skipped), skipped[0])
    if not images and not records:
        raise UserError("none of the training files can be read")
    return images, records


def _decode(encoded: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def shrink_to_short_side(image: tf.Tensor, short_side: int) -> tf.Tensor:
    """Downscales (antialiased) so the short side is `short_side`; smaller images pass."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.minimum(1.0, short_side / tf.reduce_min(shape))
    size = tf.cast(tf.round(shape * factor), tf.int32)
    resized = tf.image.resize(image, size, method="area", antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8)


def random_rescale_and_crop(image: tf.Tensor, crop_size: int, seed: tf.Tensor,
                            min_factor: float = 0.75, max_factor: float = 0.95) -> tf.Tensor:
    """Bilinear rescale by a random factor in [min, max] (raised so that the short side
    stays at least `crop_size`), then a random crop; float [0, 1] out."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    factor = tf.random.stateless_uniform([], seeds[0], min_factor, max_factor)
    factor = tf.maximum(factor, crop_size / tf.reduce_min(shape))
    size = tf.cast(tf.math.ceil(shape * factor), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size, method="bilinear")
    return tf.image.stateless_random_crop(resized, [crop_size, crop_size, 3], seeds[1])


def training_dataset(sources: Sequence[str], batch_size: int, crop_size: int, seed: int = 0,
                     cache_decoded: bool = False, shuffle_buffer: int = 256,
                     short_side: int = 0) -> tf.data.Dataset:
    """Endless batches [batch_size, crop, crop, 3] of random crops in [0, 1].

    `short_side` > 0 first shrinks each photo to that short side, so that high-resolution
    originals have the detail density of the photos the model will code. `cache_decoded`
    keeps the decoded images in memory, worth it for small sets whose decoding would
    otherwise dominate a CPU step.
    """
    image_files, record_files = find_sources(sources)
    parts = []
    if image_files:
        parts.append(tf.data.Dataset.from_tensor_slices(image_files).map(tf.io.read_file))
    if record_files:
        feature = {TFRECORD_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
        parts.append(tf.data.TFRecordDataset(record_files).map(
            lambda record: tf.io.parse_single_example(record, feature)[TFRECORD_IMAGE_KEY]))
    encoded = parts[0]
    for part in parts[1:]:
        encoded = encoded.concatenate(part)
    images = encoded.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    # A record that fails to decode is dropped rather than ending the run.
    images = images.ignore_errors(log_warning=True)
    if short_side:
        images = images.map(lambda image: shrink_to_short_side(image, short_side),
                            num_parallel_calls=tf.data.AUTOTUNE)
    if cache_decoded:
        images = images.cache()
    images = images.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    random_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    crops = tf.data.Dataset.zip((images, random_seeds)).map(
        lambda image, pair: random_rescale_and_crop(image, crop_size, pair),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return crops.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
