"""The evaluation report: files, CompressAI layout, skipped metrics, FID/KID with a stand-in."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_report_with_a_model_and_jpeg_webp_avif(tmp_path, tiny_checkpoint, photos):
    output = tmp_path / "report"
    result = run_cli("evaluate", f"--images={photos[0].parent}", f"--output={output}",
                     f"--models={tiny_checkpoint}", "--codecs=jpeg,webp,avif", "--offline",
                     f"--cache_dir={tmp_path / 'empty_cache'}", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    # Without LPIPS and Inception weights the report completes and says what it skipped.
    assert "skipping LPIPS" in result.stdout and "skipping FID" in result.stdout
    assert "skipped metrics: fid, kid, lpips" in result.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["skipped_metrics"]) == {"fid", "kid", "lpips"}
    assert "place it at" in summary["skipped_metrics"]["lpips"]

    rows = list(csv.DictReader((output / "per_image.csv").open()))
    model = tiny_checkpoint.name
    assert {r["codec"] for r in rows} == {model, "jpeg", "webp", "avif"}
    assert sum(r["codec"] == model for r in rows) == len(photos) == 3
    assert sum(r["codec"] == "jpeg" for r in rows) == 6  # matched rate and twice it
    for codec in (model, "jpeg", "webp", "avif"):
        document = json.loads((output / f"{codec}.json").read_text())
        assert document["name"] == codec
        results = document["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "niqe"} <= set(results)
        assert "lpips" not in results and "fid" not in results
        lengths = {len(v) for v in results.values()}
        assert lengths == {1 if codec == model else 2}
        assert results["bpp"] == sorted(results["bpp"])
    model_bpp = json.loads((output / f"{model}.json").read_text())["results"]["bpp"][0]
    jpeg_bpp = json.loads((output / "jpeg.json").read_text())["results"]["bpp"]
    assert jpeg_bpp[0] == pytest.approx(model_bpp, rel=0.05)
    assert jpeg_bpp[1] == pytest.approx(2 * model_bpp, rel=0.05)
    for plot in ("rd_psnr.png", "rd_ms_ssim.png", "rd_niqe.png", "figure.png"):
        assert (output / plot).stat().st_size > 1000


class _StandInInception(tf.Module):
    """Stands in for the TF-Hub Inception: 299x299 images in [-1, 1] → {"pool_3": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([5, 5, 3, 16], [1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        features = tf.nn.relu(tf.nn.conv2d(images, self.kernel, 4, "VALID"))
        return {"pool_3": tf.reduce_mean(features, axis=[1, 2], keepdims=True)}


def test_fid_and_kid_with_a_stand_in_inception(tmp_path, photos):
    from hific_tf.evaluation import CodedImage, Entry, Measures, evaluate
    from hific_tf.images import read_image
    from hific_tf.perceptual.inception import InceptionFeatures, resolve_inception

    tf.saved_model.save(_StandInInception(), str(tmp_path / "inception"))
    cache = tmp_path / "cache"
    (cache / "inception").parent.mkdir(parents=True)
    (tmp_path / "inception").rename(cache / "inception")
    source = resolve_inception(None, cache, offline=True)  # the cached copy is found
    measures = Measures(inception=InceptionFeatures(source))
    images = {p.name: read_image(p) for p in photos[:2]}

    def blur(image: np.ndarray) -> CodedImage:
        smoothed = tf.nn.avg_pool2d(tf.constant(image[None], tf.float32), 5, 1, "SAME")
        return CodedImage(1000, tf.cast(tf.round(smoothed[0]), tf.uint8).numpy())

    entries = [Entry("identity", "model", None, lambda x: CodedImage(1000, x)),
               Entry("blur", "model", None, blur)]
    _, summaries = evaluate(images, entries, measures)
    identity, blurred = summaries
    assert identity["patches"] == blurred["patches"] == 2 * 8  # 768x512: 6 + 2 each
    assert abs(identity["fid"]) < 1e-4  # zero but for the matrix square root's round-off
    assert blurred["fid"] > 1e-3 and np.isfinite(blurred["kid"])


def test_offline_without_inception_names_the_folder(tmp_path):
    from hific_tf.cache import MissingResourceError
    from hific_tf.perceptual.inception import resolve_inception

    with pytest.raises(MissingResourceError, match=str(tmp_path / "inception")):
        resolve_inception(None, tmp_path, offline=True)
