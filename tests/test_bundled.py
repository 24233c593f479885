"""The bundled models load and reproduce their references: the compressed size and the
reconstruction of a photo's centre crop, written by `hific-tf bundle --reference_image`
(`make small-models` refreshes them with the weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hific_tf.evaluation.metrics import psnr
from hific_tf.storage import zoo
from hific_tf.storage.images import read_image

from conftest import shared_data

# The shipped models' target rate on 768 x 512 photos (training aims its crops lower, see
# the small-* presets in configs.py).
TARGET_BPP = 0.25

@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_bundled_model_reproduces_its_reference(name, photos):
    if name not in zoo.bundled_names():
        pytest.skip(f"{name} is not bundled yet (no {name}{zoo.SUFFIX} in "
                    f"{zoo.bundled_folder()}; make small-models writes it)")
    json_path, png_path = zoo.reference_paths(name)
    assert json_path.is_file() and png_path.is_file(), (
        f"{name} has no reference files; rerun hific-tf bundle with --reference_image "
        "(make small-models does)")
    reference = json.loads(json_path.read_text())
    by_name = {path.name: path for path in photos}
    assert reference["image"] in by_name, f"{reference['image']} is not a shipped photo"
    crop = zoo.reference_crop(read_image(by_name[reference["image"]]), reference["crop"])
    model = zoo.load_bundled(name)
    data = model.compress(crop).numpy()
    assert len(data) == pytest.approx(reference["bytes"], rel=0.005)
    decoded = model.decompress(data).numpy()
    assert float(psnr(decoded, read_image(png_path))) >= 50.0


def test_shipped_weights_fit_the_package_size_budget():
    """Both shipped models' weights files (with their coding tables) in at most 25 MB."""
    files = [zoo.bundled_folder() / f"{name}{zoo.SUFFIX}" for name in zoo.SHIPPED_MODELS]
    present = [path for path in files if path.is_file()]
    if not present:
        pytest.skip("no bundled weights in this installation (make small-models writes them)")
    assert sum(path.stat().st_size for path in present) <= 25 * 10**6


@pytest.fixture(scope="module")
def validation_photos() -> list[Path]:
    """The 20 validation photos: val768 and more/val768 of the shared data set."""
    return sorted([*shared_data("photos/val768").glob("*.png"),
                   *shared_data("photos/more/val768").glob("*.png")])


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_bundled_models_code_the_validation_photos_at_their_target_rate(name,
                                                                       validation_photos):
    """Real .hfc files of every validation photo decode to its size, at a mean rate within
    15 % of the target the models were trained for."""
    if name not in zoo.bundled_names():
        pytest.skip(f"{name} is not bundled yet (make small-models writes it)")
    assert len(validation_photos) == 20
    model = zoo.load_bundled(name)
    rates = []
    for path in validation_photos:
        image = read_image(path)
        data = model.compress(image).numpy()
        assert model.decompress(data).numpy().shape == image.shape
        rates.append(8 * len(data) / (image.shape[0] * image.shape[1]))
    assert sum(rates) / len(rates) == pytest.approx(TARGET_BPP, rel=0.15)
