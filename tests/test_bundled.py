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
def test_bundled_model_reproduces_its_reference(name, photos):
    if name not in zoo.bundled_names():
        pytest.skip(f"{name} is not bundled yet (no {name}{zoo.SUFFIX} in "
                    f"{zoo.bundled_folder()}; make tiny-models writes it)")
    json_path, png_path = zoo.reference_paths(name)
    assert json_path.is_file() and png_path.is_file(), (
        f"{name} has no reference files; rerun hific-tf bundle with --reference_image "
        "(make tiny-models does)")
    reference = json.loads(json_path.read_text())
    by_name = {path.name: path for path in photos}
    assert reference["image"] in by_name, f"{reference['image']} is not a shipped photo"
    crop = zoo.reference_crop(read_image(by_name[reference["image"]]), reference["crop"])
    model = zoo.load_bundled(name)
    data = model.compress(crop).numpy()
    assert len(data) == pytest.approx(reference["bytes"], rel=0.005)
    decoded = model.decompress(data).numpy()
    assert float(psnr(decoded, read_image(png_path))) >= 50.0


@pytest.fixture(scope="module")
def val768_results(val768) -> dict[str, list[tuple[float, float]]]:
    """(bpp, NIQE) of every val768 photo for each bundled model there is."""
    from hific_tf.perceptual.niqe import niqe

    results = {}
    for name in set(zoo.SHIPPED_MODELS) & set(zoo.bundled_names()):
        model = zoo.load_bundled(name)
        rows = []
        for path in val768:
            image = read_image(path)
            data = model.compress(image).numpy()
            decoded = model.decompress(data).numpy()
            assert decoded.shape == image.shape
            rows.append((8 * len(data) / (image.shape[0] * image.shape[1]), niqe(decoded)))
        results[name] = rows
    return results


def results_of(results: dict, *names: str) -> list[list[tuple[float, float]]]:
    missing = [name for name in names if name not in results]
    if missing:
        pytest.skip(f"not bundled yet: {', '.join(missing)} (make tiny-models writes it)")
    return [results[name] for name in names]


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.SHIPPED_MODELS)
def test_bundled_models_code_val768_at_their_target_rate(name, val768_results):
    rows, = results_of(val768_results, name)
    rates = [bpp for bpp, _ in rows]
    assert sum(rates) / len(rates) == pytest.approx(zoo.TARGET_BPP, rel=0.15)


@pytest.mark.slow
def test_the_gan_lowers_niqe_on_val768(val768_results):
    """The paper's central claim at small scale: the GAN model's reconstructions look more
    natural (lower NIQE) than the no-GAN model's at the same rate."""
    gan_rows, no_gan_rows = results_of(val768_results, "hific-tiny", "mselpips-tiny")
    gan = [score for _, score in gan_rows]
    no_gan = [score for _, score in no_gan_rows]
    assert sum(gan) / len(gan) < sum(no_gan) / len(no_gan)
    assert sum(g < n for g, n in zip(gan, no_gan, strict=True)) >= 4
