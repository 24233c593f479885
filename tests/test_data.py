"""The training input pipeline: files, globs, TFRecords, unreadable files, rescale and crop."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hific_tf.data import find_sources, random_rescale_and_crop, training_dataset
from hific_tf.errors import UserError


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def image_folder(tmp_path, rng):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        array = rng.integers(0, 256, size=(90 + 10 * i, 120, 3), dtype=np.uint8)
        (folder / f"img{i}.png").write_bytes(_png_bytes(array))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_unreadable_files_are_skipped_and_counted(image_folder, caplog):
    with caplog.at_level("WARNING"):
        images, records = find_sources([str(image_folder)])
    assert sorted(p.rsplit("/", 1)[-1] for p in images) == ["img0.png", "img1.png",
                                                            "img2.png"]
    assert records == []
    assert "skipped 1 unreadable image files" in caplog.text


def test_globs_and_missing_sources(image_folder):
    images, _ = find_sources([str(image_folder / "img[01].png")])
    assert len(images) == 2
    with pytest.raises(UserError, match="no training files match"):
        find_sources([str(image_folder / "*.webp")])


def test_batches_from_files_and_tfrecords(image_folder, tmp_path, rng):
    record_path = tmp_path / "more.tfrecord"
    with tf.io.TFRecordWriter(str(record_path)) as writer:
        for encoded in (_png_bytes(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)),
                        b"corrupt image bytes"):
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[encoded]))}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    dataset = training_dataset([str(image_folder), str(record_path)], batch_size=4,
                               crop_size=64, seed=3)
    batches = list(dataset.take(3))
    for batch in batches:
        assert batch.shape == (4, 64, 64, 3) and batch.dtype == tf.float32
        assert float(tf.reduce_min(batch)) >= 0.0 and float(tf.reduce_max(batch)) <= 1.0
    again = list(training_dataset([str(image_folder), str(record_path)], batch_size=4,
                                  crop_size=64, seed=3).take(3))
    for first, second in zip(batches, again, strict=True):  # seedable
        np.testing.assert_array_equal(first.numpy(), second.numpy())


def test_rescale_factor_range_and_upscaling_for_small_images():
    # A horizontal ramp: after a bilinear rescale by f its slope is 1 / ((width - 1) f)
    # per pixel, which reveals the factor (fitted over the crop's row).
    width = 400
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (300, 1))
    image = tf.constant(np.repeat(ramp[..., None], 3, axis=-1).astype(np.uint8))
    factors = []
    for seed in range(20):
        crop = random_rescale_and_crop(image, 64, tf.constant([seed, 7], tf.int64)).numpy()
        slope = np.polyfit(np.arange(64), crop[32, :, 0], 1)[0]
        factors.append(1 / ((width - 1) * slope))
    assert min(factors) >= 0.745 and max(factors) <= 0.955
    assert max(factors) - min(factors) > 0.05  # it is random
    small = tf.zeros([50, 70, 3], tf.uint8)  # short side below the crop: upscaled
    assert random_rescale_and_crop(small, 64, tf.constant([1, 2], tf.int64)).shape == (
        64, 64, 3)


def test_shrinking_to_a_short_side_keeps_the_aspect_and_small_images():
    from hific_tf.data import shrink_to_short_side

    big = tf.zeros([1000, 1600, 3], tf.uint8)
    assert shrink_to_short_side(big, 512).shape == (512, 819, 3)
    small = tf.zeros([300, 200, 3], tf.uint8)
    assert shrink_to_short_side(small, 512).shape == (300, 200, 3)
