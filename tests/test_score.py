"""hific-tf score: decoded images against their originals, paired by file stem."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_tf.errors import UserError
from hific_tf.evaluation import scoring
from hific_tf.evaluation.report import Measures
from hific_tf.storage.images import read_image

from conftest import run_cli


def write_png(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


@pytest.fixture
def folders(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, Path]:
    """Originals a.png, b.png (40x50) and their "decodes" (every sample + 3), same names."""
    originals, decoded = tmp_path / "originals", tmp_path / "decoded"
    for name in ("a", "b"):
        image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
        write_png(originals / f"{name}.png", image)
        write_png(decoded / f"{name}.png", np.clip(image.astype(int) + 3, 0, 255)
                  .astype(np.uint8))
    return originals, decoded


def test_pairs_by_file_stem(folders: tuple[Path, Path], tmp_path: Path) -> None:
    originals, decoded = folders
    (decoded / "b.png").rename(decoded / "b.webp")  # another suffix, same stem
    pairs = scoring.pair_with_references([decoded], originals)
    assert [(d.name, r.name) for d, r in pairs] == [("a.png", "a.png"), ("b.webp", "b.png")]
    single = scoring.pair_with_references([decoded / "a.png"], originals / "a.png")
    assert single == [(decoded / "a.png", originals / "a.png")]


@pytest.mark.parametrize("case, message", [
    ("missing", "has no original in"),
    ("duplicate", "holds two originals named a"),
    ("one reference", "is one image but 2 images were given"),
    ("absent", "does not exist"),
])
def test_pairing_problems_are_one_clear_error(folders: tuple[Path, Path], case: str,
                                              message: str) -> None:
    originals, decoded = folders
    reference: Path = originals
    if case == "missing":
        (originals / "b.png").unlink()
    elif case == "duplicate":
        write_png(originals / "a.bmp", read_image(originals / "a.png"))
    elif case == "one reference":
        reference = originals / "a.png"
    else:
        reference = originals / "nowhere"
    with pytest.raises(UserError, match=message) as caught:
        scoring.pair_with_references([decoded], reference)
    assert "\n" not in str(caught.value)


def test_a_differently_sized_decode_is_one_clear_error(folders: tuple[Path, Path]) -> None:
    originals, decoded = folders
    write_png(decoded / "b.png", np.zeros((40, 48, 3), np.uint8))
    pairs = scoring.pair_with_references([decoded], originals)
    with pytest.raises(UserError, match=r"b.png is 48x40 but its original .*b.png is 50x40"):
        scoring.score(pairs, ("psnr",), Measures(), report=lambda _: None)


def test_unknown_metric_is_refused() -> None:
    assert scoring.parse_metrics(["LPIPS", "psnr"]) == ("psnr", "lpips")
    with pytest.raises(UserError, match="unknown fld; choose from psnr,ms_ssim,lpips"):
        scoring.parse_metrics(["psnr", "fld"])


def test_psnr_only_leaves_the_other_columns_empty(folders: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    originals, decoded = folders
    pairs = scoring.pair_with_references([decoded], originals)
    rows, set_scores = scoring.score(pairs, ("psnr",), Measures(), report=lambda _: None)
    scoring.write_scores(rows, set_scores, ("psnr",), tmp_path / "scores.csv")
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0] == "image,reference,psnr,ms_ssim,lpips,niqe"
    assert all(line.endswith(",,,") for line in lines[1:]) and len(lines) == 3
    document = json.loads((tmp_path / "scores.json").read_text())
    assert document["images"] == 2 and document["fid"] is None and document["kid"] is None


def jpeg_folder(folder: Path, originals: list[Path], quality: int) -> Path:
    """Pillow JPEG decodes: each original saved as STEM.jpg at `quality`."""
    folder.mkdir()
    for path in originals:
        Image.open(path).convert("RGB").save(folder / f"{path.stem}.jpg", quality=quality)
    return folder


@pytest.mark.slow
def test_score_on_val768_against_pillow_jpeg(tmp_path: Path, val768: list[Path]) -> None:
    reference = val768[0].parent
    q10 = jpeg_folder(tmp_path / "q10", val768, 10)
    q50 = jpeg_folder(tmp_path / "q50", val768, 50)
    result = run_cli("score", f"--reference={reference}", f"--output={tmp_path / 'q10.csv'}",
                     str(q10), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FID/256: " in result.stdout and "over 40 patches of 5 images" in result.stdout
    result = run_cli("score", f"--reference={reference}", "--metrics=psnr,lpips",
                     f"--output={tmp_path / 'q50.csv'}", str(q50), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    tables = {}
    for name in ("q10", "q50"):
        with (tmp_path / f"{name}.csv").open() as stream:
            reader = csv.DictReader(stream)
            assert reader.fieldnames == ["image", "reference", "psnr", "ms_ssim", "lpips",
                                         "niqe"]
            tables[name] = {Path(row["image"]).stem: row for row in reader}
    assert set(tables["q10"]) == set(tables["q50"]) == {p.stem for p in val768}
    for path in val768:
        low, high = tables["q10"][path.stem], tables["q50"][path.stem]
        assert Path(low["reference"]) == path
        assert float(low["lpips"]) > float(high["lpips"]) > 0  # LPIPS rises as quality falls
        assert float(low["psnr"]) < float(high["psnr"])
        assert 0 < float(low["ms_ssim"]) < 1 and float(low["niqe"]) > 0
        assert high["ms_ssim"] == high["niqe"] == ""  # not asked for
        decoded = read_image(Path(low["image"])).astype(np.float64)
        mse = np.mean((decoded - read_image(path)) ** 2)
        assert float(low["psnr"]) == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-9)
    low_set = json.loads((tmp_path / "q10.json").read_text())
    assert low_set["patches"] == 40 and low_set["images"] == 5
    assert low_set["fid"] > 0 and low_set["kid"] > 0 and low_set["kid_std"] > 0
    high_set = json.loads((tmp_path / "q50.json").read_text())
    assert high_set["fid"] is None and high_set["kid"] is None


@pytest.mark.slow
def test_cli_missing_original_is_one_line(folders: tuple[Path, Path]) -> None:
    originals, decoded = folders
    (originals / "b.png").unlink()
    result = run_cli("score", f"--reference={originals}", "--metrics=psnr", str(decoded))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "has no original in" in errors[0]


def test_set_scores_need_enough_patches(rng: np.random.Generator) -> None:
    from hific_tf.evaluation.report import set_metrics

    features = rng.normal(size=(64, 2048))
    measures = Measures(inception=lambda patches: features[:len(patches)]
                        + patches.reshape(len(patches), -1)[:, :1])
    patches = rng.integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    one = set_metrics(patches[:1], patches[:1], measures)
    two = set_metrics(patches[:2], patches[2:4], measures)
    four = set_metrics(patches, patches[::-1], measures)
    assert one == {"fid": None, "kid": None, "kid_std": None, "patches": 1}
    assert two["fid"] > 0 and two["kid"] is None and two["patches"] == 2
    assert np.isfinite(four["kid"]) and np.isfinite(four["kid_std"])
