"""experiments/bundled_training: the declared aim's checks and the snapshot scoring."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from hific_tf.codec import codec_from_model
from hific_tf.evaluation.report import Measures
from hific_tf.storage import zoo

from conftest import REPO, make_tiny_model

sys.path.insert(0, str(REPO / "experiments" / "bundled_training"))
aim = importlib.import_module("aim")
curves = importlib.import_module("curves")
score_snapshots = importlib.import_module("score_snapshots")


def summary(bpp: float, lpips: float, fid: float, kid: float, reached: bool = True) -> dict:
    return {"bpp": bpp, "lpips": lpips, "fid": fid, "kid": kid, "kid_std": 0.001,
            "all_reached": reached}


def test_all_four_hold_when_hific_small_is_lower_at_matched_rates():
    results = aim.checks(summary(0.20, 0.15, 90.0, 0.010), summary(0.205, 0.14, 100.0, 0.020),
                         summary(0.199, 0.20, 95.0, 0.015))
    assert [r["held"] for r in results] == [True, True, True, True]
    assert [r["metric"] for r in results] == ["lpips", "kid", "fid", "kid"]
    assert results[2]["margin"] == pytest.approx(-10.0)
    assert aim.sentence(results).startswith("Of the declared aim, held: LPIPS")
    assert "not held" not in aim.sentence(results)


def test_a_control_more_than_5_percent_off_the_rate_fails_aims_3_and_4_whatever_the_scores():
    results = aim.checks(summary(0.20, 0.15, 90.0, 0.010), summary(0.211, 0.14, 100.0, 0.020),
                         summary(0.20, 0.20, 95.0, 0.015))
    assert [r["held"] for r in results] == [True, True, False, False]
    assert results[2]["rate_condition_met"] is False and results[2]["margin"] < 0
    assert "not held: FID/256 below mselpips-small's; KID/256" in aim.sentence(results)


def test_jpeg_that_missed_its_target_rate_fails_aims_1_and_2():
    results = aim.checks(summary(0.20, 0.15, 90.0, 0.010), summary(0.20, 0.14, 100.0, 0.020),
                         summary(0.30, 0.20, 95.0, 0.015, reached=False))
    assert [r["held"] for r in results] == [False, False, True, True]


def test_snapshots_count_steps_from_the_start_of_stage_1(tmp_path):
    for run, names in {"stage1": ["step-18000", "step-20000"], "gan": ["step-2000"],
                       "control": ["step-2000"]}.items():
        (tmp_path / run / "snapshots").mkdir(parents=True)
        for name in names:
            (tmp_path / run / "snapshots" / f"{name}.npz").write_bytes(b"")
    (tmp_path / "control" / "step_offset").write_text("4000")  # continued from carried weights
    found = [(run, step) for run, step, _ in score_snapshots.snapshots(tmp_path)]
    # Of stage 1 only its last step, where both stage-2 runs begin.
    assert found == [("stage1", 20_000), ("gan", 22_000), ("control", 26_000)]


def test_aim_is_judged_at_steps_with_the_gan_its_jpeg_and_the_control():
    def row(run, step, codec, **values):
        return {"run": run, "step": str(step), "codec": codec, "all_reached": "True",
                "psnr": "", "niqe": "", "patches": "", "kid_std": "0.001",
                **{k: str(v) for k, v in values.items()}}

    rows = [row("stage1", 20_000, "model", bpp=0.2, lpips=0.3, fid=150, kid=0.05),
            row("stage1", 20_000, "jpeg", bpp=0.2, lpips=0.25, fid=130, kid=0.03),
            row("gan", 22_000, "model", bpp=0.2, lpips=0.2, fid=110, kid=0.02),
            row("gan", 22_000, "jpeg", bpp=0.2, lpips=0.25, fid=130, kid=0.03),
            row("gan", 24_000, "model", bpp=0.2, lpips=0.2, fid=110, kid=0.02),
            row("control", 22_010, "model", bpp=0.2, lpips=0.28, fid=140, kid=0.04)]
    judged = score_snapshots.aim_over_steps(rows)
    # 24 000 lacks its JPEG; the control continued from carried weights snapshots at 22 010.
    assert [step for step, _ in judged] == [20_000, 22_000]
    assert [r["held"] for r in judged[0][1]] == [False, False, False, False]
    assert [r["held"] for r in judged[1][1]] == [True, True, True, True]


@pytest.mark.slow
def test_a_snapshot_is_scored_from_its_coded_files_with_jpeg_at_its_rate(tmp_path, photos):
    from hific_tf.evaluation.perceptual.niqe import niqe
    from hific_tf.storage.images import read_image

    path = tmp_path / "step-2000.npz"
    zoo.save_weights(make_tiny_model(seed=0), path)
    images = {"photo.png": read_image(photos[0])[:192, :192]}
    model, jpeg = score_snapshots.score(path, images, Measures(niqe=niqe), with_jpeg=True)
    coded = codec_from_model(zoo.load_file(path)).compress(images["photo.png"])
    assert model["codec"] == "model" and model["bpp"] == pytest.approx(
        8 * len(coded) / (192 * 192))
    assert jpeg["codec"] == "jpeg" and jpeg["target_bpp"] == model["bpp"]
    assert np.isfinite(model["psnr"]) and model["lpips"] is None


FAKE_TRAINER = '''#!{python}
"""Stands in for hific-tf train: counts steps into ckpt-N.index files, stops on SIGTERM."""
import os, signal, sys, time
from pathlib import Path

flags = dict(arg[2:].split("=", 1) for arg in sys.argv[2:] if "=" in arg)
run_dir = Path(flags["run_dir"])
run_dir.mkdir(parents=True, exist_ok=True)
done = max([int(p.stem.split("-")[1]) for p in run_dir.glob("ckpt-*.index")], default=0)
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
with open(run_dir.parent / "calls.txt", "a") as log:
    log.write(f"{{run_dir.name}} {{flags['preset']}} from {{done}} cores "
              f"{{sorted(os.sched_getaffinity(0))}} init {{Path(flags['init_from']).name}}\\n")
pause = 0.02 if flags["preset"] == "small-mselpips" else 0.06
for step in range(done + 1, int(flags["num_steps"]) + 1):
    time.sleep(pause)
    if step % 5 == 0 or stop or step == int(flags["num_steps"]):
        (run_dir / f"ckpt-{{step}}.index").write_text("")
    if stop:
        sys.exit(143)
'''


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="train.sh pins one run per core")
def test_train_sh_runs_stage_2_side_by_side_then_gives_the_slower_run_both_cores(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "stage1-start.npz").write_bytes(b"")
    trainer = tmp_path / "hific-tf"
    trainer.write_text(FAKE_TRAINER.format(python=sys.executable))
    trainer.chmod(0o755)
    carried = tmp_path / "carried"  # none: not the weights this repository carries
    carried.mkdir()
    environment = {**os.environ, "HIFIC": str(trainer), "CARRIED": str(carried),
                   "STAGE1_STEPS": "20", "STAGE2_STEPS": "60"}
    script = REPO / "experiments" / "bundled_training" / "train.sh"
    result = subprocess.run(["bash", str(script), str(runs), str(tmp_path / "photos")],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    calls = (runs / "calls.txt").read_text().splitlines()
    both = sorted(os.sched_getaffinity(0))
    assert calls[0] == f"stage1 small-mselpips from 0 cores {both} init stage1-start.npz"
    # The control (faster) finishes on its core; the GAN, stopped, resumes on all of them.
    assert sorted(calls[1:3]) == ["control small-mselpips from 0 cores [1] init stage1",
                                  "gan small-hific from 0 cores [0] init stage1"]
    resumed = calls[3].split()
    assert resumed[:3] == ["gan", "small-hific", "from"] and 0 < int(resumed[3]) < 60
    assert calls[3].endswith(f"cores {both} init stage1") and len(calls) == 4
    for run in ("gan", "control"):
        assert (runs / run / "ckpt-60.index").exists()
    # Run again: everything is done, nothing trains.
    subprocess.run(["bash", str(script), str(runs), str(tmp_path / "photos")], env=environment,
                   check=True, timeout=60)
    assert len((runs / "calls.txt").read_text().splitlines()) == 4
