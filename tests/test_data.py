"""The training input pipeline: files, globs, TFRecords, unreadable files, rescale and crop."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from hific_tf.errors import UserError
from hific_tf.training.data import (
    find_sources,
    random_rescale_and_crop,
    rescale_interval,
    shrink_to_short_side,
    training_dataset,
)


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


def rescale_factors(height: int, width: int, crop_size: int, seeds: int) -> list[float]:
    """The factors random_rescale_and_crop draws for a height x width photo: a horizontal
    ramp's slope after a bilinear rescale by f is 1 / ((width - 1) f) per pixel, which
    reveals f (fitted over the crop's middle row)."""
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1))
    image = tf.constant(np.repeat(ramp[..., None], 3, axis=-1).astype(np.uint8))
    factors = []
    for seed in range(seeds):
        crop = random_rescale_and_crop(image, crop_size, tf.constant([seed, 7], tf.int64))
        slope = np.polyfit(np.arange(crop_size), crop.numpy()[crop_size // 2, :, 0], 1)[0]
        factors.append(1 / ((width - 1) * slope))
    return factors


def test_rescale_factor_range_and_upscaling_for_small_images():
    factors = rescale_factors(300, 400, 64, 20)
    assert min(factors) >= 0.745 and max(factors) <= 0.955
    assert max(factors) - min(factors) > 0.05  # it is random
    small = tf.zeros([50, 70, 3], tf.uint8)  # short side below the crop: upscaled
    assert random_rescale_and_crop(small, 64, tf.constant([1, 2], tf.int64)).shape == (
        64, 64, 3)


def test_the_rescale_interval_is_the_authors():
    # models/hific/model.py: min_fac = max(0.75, crop / short side), max_fac = max(min_fac,
    # 0.95), the factor uniform between them.
    for short_side, expected in ((3000, (0.75, 0.95)), (300, (256 / 300, 0.95)),
                                 (260, (256 / 260, 256 / 260)), (200, (1.28, 1.28))):
        low, high = rescale_interval(float(short_side), 256)
        np.testing.assert_allclose([float(low), float(high)], expected, rtol=1e-6)
    low, high = rescale_interval(100.0, 32, min_factor=0.5, max_factor=0.6)
    np.testing.assert_allclose([float(low), float(high)], [0.5, 0.6])


def test_a_small_photo_draws_its_factor_uniformly_from_the_raised_interval():
    # Short side 300, crop 256: factors from 256 / 300 = 0.853 to 0.95. Raising a factor
    # drawn from [0.75, 0.95] to 0.853 instead would give 0.853 half of the time.
    factors = np.array(rescale_factors(300, 400, 256, 24))
    width_step = 1 / 400  # the rescaled width is a whole number of pixels
    assert factors.min() >= 256 / 300 - width_step and factors.max() <= 0.95 + width_step
    assert np.sum(factors < 256 / 300 + width_step) <= 3
    assert factors.max() - factors.min() > 0.05


def reference_crop(image: tf.Tensor, crop_size: int, seed: tf.Tensor) -> tf.Tensor:
    """The whole photo rescaled by tf.image.resize, then tf.image.stateless_random_crop."""
    sides = tf.cast(tf.shape(image)[:2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    factor = tf.random.stateless_uniform(
        [], seeds[0], *rescale_interval(tf.reduce_min(sides), crop_size))
    size = tf.cast(tf.math.ceil(sides * factor), tf.int32)
    resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size, method="bilinear")
    return tf.image.stateless_random_crop(resized, [crop_size, crop_size, 3], seeds[1])


def test_only_the_crop_is_computed_and_it_is_the_rescaled_photos(rng):
    for height, width, crop_size in ((90, 120, 64), (300, 70, 64), (40, 50, 64),
                                     (64, 64, 64), (257, 380, 32), (33, 47, 16)):
        image = tf.constant(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for seed in range(5):
            pair = tf.constant([seed, height], tf.int64)
            np.testing.assert_allclose(random_rescale_and_crop(image, crop_size, pair),
                                       reference_crop(image, crop_size, pair), atol=1e-4)


def pipeline_nodes(dataset: tf.data.Dataset) -> tuple[list, dict]:
    """The dataset's graph: its dataset ops, and its constants' nodes by name."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    return ([node for node in graph.node if "Dataset" in node.op],
            {node.name: node for node in graph.node if node.op == "Const"})


def test_memory_is_bounded_by_the_pipelines_structure(image_folder, tmp_path, rng):
    """Whatever the photos' size and number: shuffles hold file names or crops, never
    decoded photos, and what decodes runs a fixed number of photos at a time."""
    record_path = tmp_path / "more.tfrecord"
    with tf.io.TFRecordWriter(str(record_path)) as writer:
        feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[
            _png_bytes(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8))]))}
        writer.write(tf.train.Example(
            features=tf.train.Features(feature=feature)).SerializeToString())
    for short_side in (0, 100):
        dataset = training_dataset([str(image_folder), str(record_path)], batch_size=2,
                                   crop_size=32, short_side=short_side, images_in_flight=3)
        nodes, constants = pipeline_nodes(dataset)
        shuffled = [[str(tf.TensorShape(shape)) for shape in
                     node.attr["output_shapes"].list.shape]
                    for node in nodes if node.op.startswith("Shuffle")]
        assert shuffled and all(shapes in (["()"], ["(32, 32, 3)"]) for shapes in shuffled)
        parallel = [int(tf.make_ndarray(constants[node.input[-1]].attr["value"].tensor))
                    for node in nodes if node.op.startswith("ParallelMap")]
        assert parallel == [3]  # decoding and cropping, never tf.data.AUTOTUNE (-1)


def test_the_cache_is_refused_past_its_limit_and_for_tfrecords(image_folder, tmp_path):
    # The three images decode to 3 * 120 * (90 + 100 + 110) bytes; shrunk to a short
    # side of 45, to half as many pixels a side.
    whole = 3 * 120 * 300
    with pytest.raises(UserError, match=r"^cache_decoded would hold 0.1 MiB of decoded "
                                        r"images, more than its limit of 0.1 MiB; leave it "
                                        r"off, or set data_short_side to cache them shrunk$"):
        training_dataset([str(image_folder)], 2, 32, cache_decoded=True,
                         cache_limit=whole - 1)
    shrunk = training_dataset([str(image_folder)], 2, 32, cache_decoded=True,
                              cache_limit=whole // 3, short_side=45)
    assert next(iter(shrunk)).shape == (2, 32, 32, 3)
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    with pytest.raises(UserError, match="cache_decoded keeps image files only"):
        training_dataset([str(image_folder), str(tmp_path / "empty.tfrecord")], 2, 32,
                         cache_decoded=True)


def test_cached_and_streamed_photos_give_seeded_crops(image_folder):
    for cache_decoded in (False, True):
        batches = [training_dataset([str(image_folder)], 3, 32, seed=seed,
                                    cache_decoded=cache_decoded).take(4) for seed in (5, 5, 6)]
        first, again, other = ([batch.numpy() for batch in dataset] for dataset in batches)
        np.testing.assert_array_equal(np.stack(first), np.stack(again))
        assert not np.array_equal(np.stack(first), np.stack(other))


def test_shrinking_to_a_short_side_keeps_the_aspect_and_small_images():
    big = tf.zeros([1000, 1600, 3], tf.uint8)
    assert shrink_to_short_side(big, 512).shape == (512, 819, 3)
    small = tf.zeros([300, 200, 3], tf.uint8)
    assert shrink_to_short_side(small, 512).shape == (300, 200, 3)
