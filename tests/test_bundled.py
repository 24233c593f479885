"""The bundled models load and reproduce their references: the compressed size and the
reconstruction of a photo's centre crop, written by `hific-tf bundle --reference_image`
(`make tiny-models` refreshes them with the weights)."""

from __future__ import annotations

import json

import pytest

from hific_tf import zoo
from hific_tf.images import read_image
from hific_tf.metrics import psnr


@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_bundled_model_reproduces_its_reference(name, val768):
    if name not in zoo.bundled_names():
        pytest.skip(f"{name} is not bundled yet (no {name}{zoo.SUFFIX} in "
                    f"{zoo.bundled_folder()}; make tiny-models writes it)")
    json_path, png_path = zoo.reference_paths(name)
    assert json_path.is_file() and png_path.is_file(), (
        f"{name} has no reference files; rerun hific-tf bundle with --reference_image "
        "(make tiny-models does)")
    reference = json.loads(json_path.read_text())
    photos = {path.name: path for path in val768}
    assert reference["image"] in photos, f"{reference['image']} is not a val768 photo"
    crop = zoo.reference_crop(read_image(photos[reference["image"]]), reference["crop"])
    model = zoo.load_bundled(name)
    data = model.compress(crop).numpy()
    assert len(data) == pytest.approx(reference["bytes"], rel=0.005)
    decoded = model.decompress(data).numpy()
    assert float(psnr(decoded, read_image(png_path))) >= 50.0
