"""The hific-tf command as a user runs it: files, folders, refusals and bad inputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hific_tf.codec import codec_from_model
from hific_tf.storage import zoo
from hific_tf.storage.images import read_image, write_png

from conftest import make_tiny_model, run_cli

pytestmark = pytest.mark.slow

SENTINEL = b"existing output that must survive"


def assert_one_clean_error(result, pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    assert pattern in errors[0], result.stderr


def test_compress_and_decompress_one_file(tmp_path, tiny_checkpoint, tiny_model, photos):
    source = tmp_path / "photo.png"
    source.write_bytes(photos[0].read_bytes())
    result = run_cli("compress", f"--model={tiny_checkpoint}", str(source))
    assert result.returncode == 0, result.stderr
    coded = tmp_path / "photo.hfc"
    codec = codec_from_model(tiny_model)
    assert coded.read_bytes() == codec.compress(read_image(source))
    assert "bpp" in result.stderr
    output = tmp_path / "decoded.png"
    result = run_cli("decompress", f"--model={tiny_checkpoint}", str(coded),
                     f"--output={output}")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.asarray(Image.open(output)),
                                  codec.decompress(coded.read_bytes()))
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind

    # Refuses to overwrite, and leaves the existing file as it was.
    before = coded.read_bytes()
    result = run_cli("compress", f"--model={tiny_checkpoint}", str(source))
    assert_one_clean_error(result, "already exists; pass --overwrite")
    assert coded.read_bytes() == before
    result = run_cli("compress", f"--model={tiny_checkpoint}", "--overwrite", str(source))
    assert result.returncode == 0, result.stderr


def test_a_weights_file_codes_as_the_model_it_stores(tmp_path, photos):
    weights = tmp_path / "snapshot.npz"  # as hific-tf bundle and training snapshots write
    zoo.save_weights(make_tiny_model(seed=3), weights)
    coded = tmp_path / "photo.hfc"
    result = run_cli("compress", f"--model={weights}", str(photos[0]), f"--output={coded}")
    assert result.returncode == 0, result.stderr
    codec = codec_from_model(zoo.load_file(weights))
    assert coded.read_bytes() == codec.compress(read_image(photos[0]))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(weights.read_bytes()[:1000])
    result = run_cli("compress", f"--model={damaged}", str(photos[0]),
                     f"--output={tmp_path / 'other.hfc'}")
    assert_one_clean_error(result, "is not a hific-tf weights file")
    assert not (tmp_path / "other.hfc").exists()


def test_folders_with_progress(tmp_path, tiny_checkpoint, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in photos[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    result = run_cli("compress", f"--model={tiny_checkpoint}", str(folder),
                     f"--output={tmp_path / 'coded'}")
    assert result.returncode == 0, result.stderr
    assert "[3/3]" in result.stderr and "left)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "coded").iterdir()) == sorted(
        p.stem + ".hfc" for p in photos[:3])
    result = run_cli("decompress", f"--model={tiny_checkpoint}", str(tmp_path / "coded"),
                     f"--output={tmp_path / 'decoded'}")
    assert result.returncode == 0, result.stderr
    for path in photos[:3]:
        decoded = np.asarray(Image.open(tmp_path / "decoded" / f"{path.stem}.png"))
        assert decoded.shape == read_image(path).shape


def test_folder_input_needs_output(tmp_path, tiny_checkpoint):
    result = run_cli("compress", f"--model={tiny_checkpoint}", str(tmp_path))
    assert_one_clean_error(result, "--output is required")


def test_bad_flag_and_missing_model_fail_cleanly(tmp_path):
    result = run_cli("compress", "--no_such_flag", "x.png")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no_such_flag" in result.stderr
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    result = run_cli("compress", f"--model={tmp_path / 'nowhere'}", str(image))
    assert_one_clean_error(result, "does not exist")
    result = run_cli("compress", f"--model={tmp_path}", str(image))
    assert_one_clean_error(result, "not a hific-tf checkpoint directory")


def test_text_file_renamed_to_png(tmp_path, tiny_checkpoint):
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not an image\n")
    started = time.monotonic()
    result = run_cli("compress", f"--model={tiny_checkpoint}", str(fake))
    assert time.monotonic() - started < 60
    assert_one_clean_error(result, "is not an image file")
    assert not (tmp_path / "notes.hfc").exists()


def _bad_files(good: bytes, foreign: bytes) -> dict[str, bytes]:
    """Every kind of bad file from the issue, by name."""
    from test_bitstream import rebuild

    bad = {f"truncated_{tenth}0pct": good[:len(good) * tenth // 10] for tenth in range(10)}
    for position in (0, 4, 5, 22, 30, 37, len(good) // 2, len(good) - 1):
        damaged = bytearray(good)
        damaged[position] ^= 0x04
        bad[f"flipped_byte_{position}"] = bytes(damaged)
    bad["wrong_magic"] = rebuild(good, magic=b"GIF8")
    bad["future_version"] = rebuild(good, version=7)
    bad["other_weights"] = foreign
    bad["huge_dimensions"] = rebuild(good, height=100_000, width=100_000)
    return bad


def test_every_bad_file_gives_one_line_and_overwrites_nothing(tmp_path, tiny_checkpoint,
                                                             tiny_model):
    from conftest import make_tiny_model

    image = np.random.default_rng(9).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    good = tiny_model.compress(image).numpy()
    other_model = make_tiny_model(seed=2)
    foreign = other_model.compress(image).numpy()
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    bad = _bad_files(good, foreign)
    for name, data in bad.items():
        (inputs / f"{name}.hfc").write_bytes(data)
        (outputs / f"{name}.png").write_bytes(SENTINEL)
    started = time.monotonic()
    result = run_cli("decompress", f"--model={tiny_checkpoint}", "--overwrite", str(inputs),
                     f"--output={outputs}")
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == len(bad) + 1  # one per file, then the count
    assert f"{len(bad)} of {len(bad)} files failed" in lines[-1]
    for name in bad:
        assert sum(f"{name}.hfc" in line for line in lines) == 1, name
        assert (outputs / f"{name}.png").read_bytes() == SENTINEL
    expected = {"wrong_magic": "not a HiFiC compressed file",
                "future_version": "unsupported format version 7",
                "other_weights": "written by model",
                "huge_dimensions": "100000x100000 in the header is out of range",
                "truncated_50pct": "truncated", "flipped_byte_37": "checksum mismatch"}
    for name, message in expected.items():
        line = next(line for line in lines if f"{name}.hfc" in line)
        assert message in line, line


def test_single_bad_file_fails_within_seconds(tmp_path, tiny_checkpoint, tiny_model):
    data = tiny_model.compress(np.zeros((8, 8, 3), np.uint8)).numpy()
    path = tmp_path / "cut.hfc"
    path.write_bytes(data[: len(data) // 2])
    started = time.monotonic()
    result = run_cli("decompress", f"--model={tiny_checkpoint}", str(path))
    assert time.monotonic() - started < 60
    assert_one_clean_error(result, "truncated")
    assert not Path(tmp_path / "cut.png").exists()


def test_demo_codes_with_both_bundled_models_and_writes_the_report(tmp_path, photos,
                                                                   monkeypatch):
    weights = tmp_path / "weights"  # stand-ins for the bundled models
    for seed, name in enumerate(zoo.SHIPPED_MODELS):
        zoo.save_weights(make_tiny_model(seed=seed), weights / f"{name}.npz")
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(weights))
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in photos[:2]:  # crops: 3 FID/256 patches each, for the real Inception's sake
        write_png(folder / path.name, read_image(path)[:384, :512])
    output = tmp_path / "demo"
    result = run_cli("demo", f"--input={folder}", f"--output={output}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in zoo.SHIPPED_MODELS:  # one subfolder per model: .hfc files and their decodes
        codec = codec_from_model(zoo.load_weights(weights / f"{name}.npz"))
        for path in photos[:2]:
            decoded = codec.decompress((output / name / f"{path.stem}.hfc").read_bytes())
            np.testing.assert_array_equal(decoded, read_image(output / name / f"{path.stem}.png"))
    report = output / "report"
    rows = (report / "per_image.csv").read_text().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == {*zoo.SHIPPED_MODELS, "jpeg", "webp", "avif"}
    for plot in ("rd_psnr.png", "rd_ms_ssim.png", "rd_niqe.png", "rd_lpips.png", "rd_fid.png",
                 "figure.png"):
        assert (report / plot).stat().st_size > 1000
    assert "skipping" not in result.stdout and str(report) in result.stdout
    # LPIPS, FID and KID for both models and every classic codec, on 2 x 3 FID/256 patches.
    summaries = json.loads((report / "summary.json").read_text())["summaries"]
    assert {s["codec"] for s in summaries} == {*zoo.SHIPPED_MODELS, "jpeg", "webp", "avif"}
    for summary in summaries:
        assert summary["lpips"] > 0 and summary["fid"] > 0 and summary["kid"] is not None
        assert summary["patches"] == 2 * 3
    assert "FID and KID are FID/256 figures" in result.stdout and " patches" in result.stdout


def test_demo_without_bundled_models_says_how_to_get_them(tmp_path, photos, monkeypatch):
    monkeypatch.setenv(zoo.WEIGHTS_ENV, str(tmp_path))
    result = run_cli("demo", f"--input={photos[0].parent}", f"--output={tmp_path / 'demo'}")
    assert_one_clean_error(result, "make small-models")


def test_demo_refuses_an_unknown_model_and_names_the_file_a_published_one_needs(
        tmp_path, photos, monkeypatch):
    from hific_tf.published import runner
    from hific_tf.storage import cache
    output = tmp_path / "demo"
    result = run_cli("demo", f"--input={photos[0].parent}", f"--output={output}",
                     "--models=hific-small,hific-xx")
    assert_one_clean_error(result, "--models: unknown model 'hific-xx'; choose from")
    assert result.returncode == 1
    line = next(line for line in result.stderr.splitlines() if "error:" in line)
    for name in (*zoo.SHIPPED_MODELS, *runner.MODEL_NAMES):
        assert name in line
    # Offline, a published model not in place: one line naming the file and where it goes.
    empty = tmp_path / "published"
    empty.mkdir()
    result = run_cli("demo", f"--input={photos[0].parent}", f"--output={output}",
                     "--models=hific-mi", f"--published_dir={empty}")
    assert_one_clean_error(result, f"not found at {empty / 'hific-mi.metagraph'}")
    monkeypatch.delenv(runner.DIRECTORY_ENV, raising=False)
    monkeypatch.setenv(cache.OFFLINE_ENV, "1")
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    result = run_cli("demo", f"--input={photos[0].parent}", f"--output={output}",
                     "--models=hific-hi")
    assert_one_clean_error(result, f"place it at {tmp_path / 'cache/published/hific-hi.metagraph'}")
    assert not output.exists()  # nothing coded before the models are all there


@pytest.mark.slow
def test_published_dir_is_offered_only_by_commands_that_read_it():
    for command, reads_it in (("compress", True), ("train", True), ("convert", True),
                              ("demo", True),
                              ("export", False), ("bundle", False)):
        result = run_cli(command, "--helpfull")  # every flag the command accepts, by module
        assert f"hific_tf.cli.{command}:" in result.stdout, result.stderr[-2000:]
        assert ("--published_dir" in result.stdout) == reads_it, command
