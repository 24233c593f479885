"""The evaluation report: files, CompressAI layout, LPIPS and FID/KID with the real networks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from hific_tf.storage.images import read_image, write_png

from conftest import run_cli

pytestmark = pytest.mark.slow


def _folders_of(photos, tmp_path, groups: list[slice]) -> list[str]:
    """512 x 384 crops of the photos (3 FID/256 patches each, to keep the real Inception's
    share of the test small) split over folders, as --images takes them."""
    folders = []
    for index, group in enumerate(groups):
        folder = tmp_path / f"folder{index}"
        folder.mkdir()
        for photo in photos[group]:
            write_png(folder / photo.name, read_image(photo)[:384, :512])
        folders.append(str(folder))
    return folders


def test_report_with_a_model_and_jpeg_webp_avif(tmp_path, tiny_checkpoint, photos):
    output = tmp_path / "report"
    folders = _folders_of(photos, tmp_path, [slice(0, 2), slice(2, 3)])
    result = run_cli("evaluate", f"--images={','.join(folders)}", f"--output={output}",
                     f"--models={tiny_checkpoint}", "--codecs=jpeg,webp,avif", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping" not in result.stdout and "skipped metrics" not in result.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert summary["skipped_metrics"] == {}
    for point in summary["summaries"]:  # the real LPIPS, FID and KID for every codec and rate
        assert point["patches"] == 3 * 3  # 512x384: 2 + 1 FID/256 patches per photo
        assert point["lpips"] > 0 and point["fid"] > 0 and np.isfinite(point["kid"])

    rows = list(csv.DictReader((output / "per_image.csv").open()))
    model = tiny_checkpoint.name
    assert {r["codec"] for r in rows} == {model, "jpeg", "webp", "avif"}
    assert sum(r["codec"] == model for r in rows) == len(photos) == 3
    assert sum(r["codec"] == "jpeg" for r in rows) == 6  # matched rate and twice it
    for codec in (model, "jpeg", "webp", "avif"):
        document = json.loads((output / f"{codec}.json").read_text())
        assert document["name"] == codec
        results = document["results"]
        assert {"bpp", "psnr-rgb", "ms-ssim-rgb", "niqe", "lpips", "fid", "kid"} <= set(results)
        lengths = {len(v) for v in results.values()}
        assert lengths == {1 if codec == model else 2}
        assert results["bpp"] == sorted(results["bpp"])
    model_bpp = json.loads((output / f"{model}.json").read_text())["results"]["bpp"][0]
    jpeg_bpp = json.loads((output / "jpeg.json").read_text())["results"]["bpp"]
    assert jpeg_bpp[0] == pytest.approx(model_bpp, rel=0.05)
    assert jpeg_bpp[1] == pytest.approx(2 * model_bpp, rel=0.05)
    for plot in ("rd_psnr.png", "rd_ms_ssim.png", "rd_niqe.png", "rd_lpips.png", "rd_fid.png",
                 "rd_kid.png", "figure.png"):
        assert (output / plot).stat().st_size > 1000


def test_a_photo_name_in_two_folders_is_refused(tmp_path, photos):
    folders = _folders_of(photos, tmp_path, [slice(0, 2), slice(1, 3)])
    result = run_cli("evaluate", f"--images={','.join(folders)}", "--rates=0.5",
                     f"--output={tmp_path / 'report'}")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{photos[1].name} appear in more than one folder" in result.stderr
    assert not (tmp_path / "report").exists()


def test_fid_and_kid_with_the_real_inception(photos):
    from hific_tf.evaluation.perceptual.inception import InceptionFeatures
    from hific_tf.evaluation.report import CodedImage, Entry, Measures, evaluate
    from hific_tf.storage.images import read_image

    inception = InceptionFeatures()
    calls = []

    def counted(patches: np.ndarray) -> np.ndarray:
        calls.append(len(patches))
        return inception(patches)

    measures = Measures(inception=counted)
    images = {p.name: read_image(p) for p in photos[:2]}

    def blur(image: np.ndarray) -> CodedImage:
        smoothed = tf.nn.avg_pool2d(tf.constant(image[None], tf.float32), 11, 1, "SAME")
        return CodedImage(1000, tf.cast(tf.round(smoothed[0]), tf.uint8).numpy())

    entries = [Entry("identity", "model", None, lambda x: CodedImage(1000, x)),
               Entry("blur", "model", None, blur)]
    _, summaries = evaluate(images, entries, measures)
    identity, blurred = summaries
    assert identity["patches"] == blurred["patches"] == 2 * 8  # 768x512: 6 + 2 each
    assert abs(identity["fid"]) < 1e-6 and blurred["fid"] > 1
    # KID is unbiased: around 0 for equal sets (negative here), clearly above for the blur.
    assert identity["kid"] < 0.001 < blurred["kid"]
    assert calls == [16, 16]  # the originals' patches went through Inception once
