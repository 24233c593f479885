"""tf.data input pipelines: image files or TFRecords → random rescaled crops in [0, 1].

Memory stays bounded whatever the photos' size: the pipeline shuffles file names and crops,
never decoded photos, decodes at most `images_in_flight` photos at a time, and computes
only each crop's pixels of a rescaled photo (benchmarks/pipeline_memory.py).
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf
from absl import logging
from PIL import Image

from hific_tf.errors import UserError
from hific_tf.storage.images import IMAGE_SUFFIXES

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
# TFRecord files hold tf.train.Examples whose "image" feature is an encoded JPEG or PNG.
TFRECORD_IMAGE_KEY = "image"
# TFRecord files read at once, their records taken in turn.
RECORD_FILES_AT_ONCE = 4
# What `cache_decoded` may hold: the decoded (shrunk, with a short side) image files.
CACHE_LIMIT_BYTES = 2 * 2**30


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


def rescale_interval(short_side: tf.Tensor | float, crop_size: int, min_factor: float = 0.75,
                     max_factor: float = 0.95) -> tuple[tf.Tensor, tf.Tensor]:
    """The interval the rescaling factor is drawn from, uniformly, as in the authors' code
    (models/hific/model.py, `_preprocess`): [min_factor, max_factor] with its lower end
    raised to crop_size / short_side where the crop needs more, and its upper end raised
    to the lower end where even that is too small (one factor then, an upscale for photos
    whose short side is below the crop)."""
    low = tf.maximum(min_factor, crop_size / short_side)
    return low, tf.maximum(low, max_factor)


def random_rescale_and_crop(image: tf.Tensor, crop_size: int, seed: tf.Tensor,
                            min_factor: float = 0.75, max_factor: float = 0.95) -> tf.Tensor:
    """A random crop_size x crop_size crop, float [0, 1], of `image` rescaled (bilinear) by
    a random factor drawn uniformly from `rescale_interval`.

    Only the crop's pixels are computed, each sampled where tf.image.resize samples the
    whole rescaled image (half-pixel centres, clamped at the edges) and cut where
    tf.image.stateless_random_crop would cut it: a photo costs its uint8 pixels, not float
    copies at full size.
    """
    shape = tf.shape(image)[:2]
    sides = tf.cast(shape, tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    low, high = rescale_interval(tf.reduce_min(sides), crop_size, min_factor, max_factor)
    factor = tf.random.stateless_uniform([], seeds[0], low, high)
    size = tf.cast(tf.math.ceil(sides * factor), tf.int32)
    # Drawn as stateless_random_crop draws them, channel axis included.
    offset = tf.random.stateless_uniform([3], seeds[1], maxval=tf.int32.max,
                                         dtype=tf.int32)[:2] % (size - crop_size + 1)
    scale = sides / tf.cast(size, tf.float32)  # input pixels per rescaled pixel
    first = (tf.cast(offset, tf.float32) + 0.5) * scale - 0.5
    last = first + (crop_size - 1) * scale
    # The input pixels the crop reads, one to spare a side, padded by copies of the edge
    # pixels (resize's clamping) where the positions reach past the image.
    start = tf.maximum(tf.cast(tf.floor(first), tf.int32) - 1, 0)
    end = tf.minimum(tf.cast(tf.floor(last), tf.int32) + 3, shape)
    window = tf.pad(image[start[0]:end[0], start[1]:end[1]], [[1, 1], [1, 1], [0, 0]],
                    mode="SYMMETRIC")
    origin = tf.cast(start, tf.float32) - 1.0
    extent = tf.cast(tf.shape(window)[:2] - 1, tf.float32)
    box = tf.concat([(first - origin) / extent, (last - origin) / extent], axis=0)
    crop = tf.image.crop_and_resize(window[tf.newaxis], box[tf.newaxis], [0],
                                    [crop_size, crop_size], method="bilinear")
    return crop[0] / 255.0


def _decoded_bytes(path: str, short_side: int) -> int:
    """Bytes of the uint8 image `path` decodes to (shrunk to `short_side` if > 0), from
    its header alone."""
    with Image.open(path) as image:
        width, height = image.size
    factor = min(1.0, short_side / min(width, height)) if short_side else 1.0
    return round(width * factor) * round(height * factor) * 3


def _check_cache(image_files: list[str], record_files: list[str], short_side: int,
                 limit: int) -> None:
    """Refuses a cache whose decoded images would pass `limit` bytes, or of TFRecords,
    whose images' sizes are unknown until decoded."""
    if record_files:
        raise UserError("cache_decoded keeps image files only (a TFRecord's images are "
                        "unknown in size until decoded); leave it off for TFRecords")
    total = sum(_decoded_bytes(path, short_side) for path in image_files)
    if total > limit:
        raise UserError(f"cache_decoded would hold {total / 2**20:.1f} MiB of decoded "
                        f"images, more than its limit of {limit / 2**20:.1f} MiB; leave it "
                        "off, or set data_short_side to cache them shrunk")


def _encoded(image_files: list[str], record_files: list[str], seed: int | None
             ) -> tf.data.Dataset:
    """One pass over the encoded images: the image files (in a new order each pass when
    `seed` is given), then the TFRecords' (files likewise), RECORD_FILES_AT_ONCE files read
    in turn."""
    def ordered(files: list[str]) -> tf.data.Dataset:
        names = tf.data.Dataset.from_tensor_slices(files)
        if seed is None:
            return names
        return names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

    parts = []
    if image_files:
        parts.append(ordered(image_files).map(tf.io.read_file))
    if record_files:
        feature = {TFRECORD_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
        records = ordered(record_files).interleave(
            tf.data.TFRecordDataset, cycle_length=min(len(record_files), RECORD_FILES_AT_ONCE))
        parts.append(records.map(
            lambda record: tf.io.parse_single_example(record, feature)[TFRECORD_IMAGE_KEY]))
    encoded = parts[0]
    for part in parts[1:]:
        encoded = encoded.concatenate(part)
    return encoded


def training_dataset(sources: Sequence[str], batch_size: int, crop_size: int, seed: int = 0,
                     cache_decoded: bool = False, shuffle_buffer: int = 64,
                     short_side: int = 0, images_in_flight: int = 4,
                     cache_limit: int = CACHE_LIMIT_BYTES) -> tf.data.Dataset:
    """Endless batches [batch_size, crop, crop, 3] of random crops in [0, 1], the same for
    the same seed.

    Each pass visits every photo once, in a new order, for one crop; `shuffle_buffer` crops
    are shuffled across passes and sources (as the authors shuffle 10 batches of crops).
    At most `images_in_flight` photos are decoded at a time, so memory is about that many
    decoded photos plus the buffered crops, whatever the photos' number and size.

    `short_side` > 0 first shrinks each photo to that short side, so that high-resolution
    originals have the detail density of the photos the model will code.
    `cache_decoded` keeps the decoded image files (shrunk, with `short_side`) in memory,
    worth it for small sets whose decoding would otherwise dominate a CPU step; it is
    refused (UserError) for TFRecords and where the images would take more than
    `cache_limit` bytes, which their headers tell before anything is decoded.
    """
    image_files, record_files = find_sources(sources)

    def prepare(encoded: tf.Tensor) -> tf.Tensor:
        image = _decode(encoded)
        return shrink_to_short_side(image, short_side) if short_side else image

    if cache_decoded:
        _check_cache(image_files, record_files, short_side, cache_limit)
        # The cache holds every image anyway: a shuffle of all of them adds no copies.
        images = _encoded(image_files, [], seed=None).map(
            prepare, num_parallel_calls=images_in_flight, deterministic=True)
        images = images.ignore_errors(log_warning=True).cache().shuffle(
            len(image_files), seed=seed, reshuffle_each_iteration=True)
    else:
        images = _encoded(image_files, record_files, seed)

    def crop(element: tf.Tensor, pair: tf.Tensor) -> tf.Tensor:
        image = element if cache_decoded else prepare(element)
        return random_rescale_and_crop(image, crop_size, pair)

    random_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    crops = tf.data.Dataset.zip((images, random_seeds)).map(
        crop, num_parallel_calls=images_in_flight, deterministic=True)
    # A photo that fails to decode is dropped rather than ending the run; passes repeat
    # only after it, so that sources none of which decodes end the data instead of looping.
    crops = crops.ignore_errors(log_warning=True).repeat()
    crops = crops.shuffle(shuffle_buffer, seed=seed)
    return crops.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
