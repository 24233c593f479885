"""Issue 40's learning curves: every 2 000 steps of both runs, what watches the GAN's
balance and what the aim is judged by.

- On the three photos the repository ships (each run's validation.jsonl): bpp, PSNR, LPIPS,
  NIQE.
- From the training summaries (each run's train/ event file), averaged over the
  WINDOW steps up to the point: D's mean output on real and on reconstructed crops
  (d_real, d_fake) and the GAN term of G's loss (-log D(x')), the GAN run only.
- On the 20 validation photos, each snapshot (snapshots/step-N.npz) coded as real files:
  bpp, NIQE and KID/256 (± its standard error), FID/256 beside it.

Steps count from the start of stage 2: step 0 is the start both runs share (the shipped
mselpips-small). Rows go to curves.csv beside this script; rows there are kept and
snapshots already scored are not scored again (run directories may not outlive a session).
curves.png draws them. Measured, never used to choose: the last checkpoint of each run ships.

    python experiments/gan_vs_control/curves.py [RUNS] --photos=../shared/data/photos
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CSV = HERE / "curves.csv"
RUNS = ("gan", "control")
LABELS = {"gan": "GAN (small-hific, β = 0.15)", "control": "control (stage 1 continued)"}
FOLDERS = ("val768", "more/val768")  # the 20 validation photos
WINDOW = 500  # training summaries averaged over this many steps up to each point
SHIPPED = ("bpp", "psnr", "lpips", "niqe")
BALANCE = ("d_real", "d_fake", "generator_gan")
VALIDATION = ("val_bpp", "val_niqe", "val_fid", "val_kid", "val_kid_std")
COLUMNS = ("run", "step", *SHIPPED, *BALANCE, *VALIDATION)


def offset(run_dir: Path) -> int:
    """Steps done before the run directory began (train.sh's step_offset, where a run was
    continued from carried weights)."""
    marker = run_dir / "step_offset"
    return int(marker.read_text()) if marker.exists() else 0


def shipped_photo_scores(run_dir: Path) -> dict[int, dict]:
    """validation.jsonl by step (from the start of stage 2)."""
    records = run_dir / "validation.jsonl"
    if not records.exists():
        return {}
    scores = {}
    for line in records.read_text().splitlines():
        record = json.loads(line)
        scores[record["step"] + offset(run_dir)] = {name: record.get(name, "")
                                                    for name in SHIPPED}
    return scores


def training_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the run's training summaries: name → [(step, value)]."""
    import tensorflow as tf

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((run_dir / "train").glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(
                    (event.step + offset(run_dir), float(tf.make_ndarray(value.tensor))))
    return scalars


def balance_at(scalars: dict[str, list[tuple[int, float]]], step: int) -> dict[str, object]:
    """The mean of each balance scalar over (step - WINDOW, step]; empty where none."""
    result: dict[str, object] = {}
    for name in BALANCE:
        values = [value for at, value in scalars.get(name, ()) if step - WINDOW < at <= step]
        result[name] = f"{np.mean(values):.6g}" if values else ""
    return result


def snapshots(runs: Path) -> list[tuple[str, int, Path]]:
    """(run, step, file) of every weights snapshot, and the shared start as step 0."""
    found = [("start", 0, runs / "start.npz")] if (runs / "start.npz").exists() else []
    for run in RUNS:
        for path in sorted((runs / run / "snapshots").glob("step-*.npz")):
            found.append((run, int(path.stem.split("-")[1]) + offset(runs / run), path))
    return found


def score_snapshot(path: Path, images: dict[str, np.ndarray], measures: object) -> dict:
    """bpp, NIQE, FID/256 and KID/256 of the snapshot's real files on `images`."""
    from hific_tf.codec import load_codec
    from hific_tf.evaluation import report

    _, (summary,) = report.evaluate(
        images, [report.model_entry(path.stem, load_codec(path))], measures)
    return {"val_bpp": summary["bpp"], "val_niqe": summary["niqe"], "val_fid": summary["fid"],
            "val_kid": summary["kid"], "val_kid_std": summary["kid_std"]}


def read_rows() -> dict[tuple[str, int], dict]:
    if not CSV.exists():
        return {}
    with CSV.open() as stream:
        return {(row["run"], int(row["step"])): row for row in csv.DictReader(stream)}


def write_rows(rows: dict[tuple[str, int], dict]) -> None:
    order = ("start", *RUNS)
    with CSV.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for key in sorted(rows, key=lambda k: (order.index(k[0]), k[1])):
            writer.writerow({name: rows[key].get(name, "") for name in COLUMNS})


def number(value: object) -> float:
    return float(value) if value not in ("", None, "None") else float("nan")


def plot(rows: dict[tuple[str, int], dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("bpp", "bpp, 3 shipped photos"), ("psnr", "PSNR (dB), 3 shipped photos"),
              ("lpips", "LPIPS, 3 shipped photos"), ("val_niqe", "NIQE, 20 validation photos"),
              ("val_kid", "KID/256 ± s.e., 20 validation photos"),
              ("balance", "GAN run: D(x), D(x') and −log D(x')"))
    figure, grid = plt.subplots(2, 3, figsize=(15, 7.5))
    start = rows.get(("start", 0), {})
    for axis, (metric, title) in zip(grid.flat, panels, strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step of stage 2")
        axis.grid(alpha=0.3)
        if metric == "balance":
            points = sorted((step, row) for (run, step), row in rows.items() if run == "gan")
            for name, colour in zip(BALANCE, ("tab:green", "tab:red", "tab:purple"),
                                    strict=True):
                axis.plot([s for s, _ in points], [number(r[name]) for _, r in points], "o-",
                          color=colour, ms=3, label=name)
            axis.legend(fontsize=8)
            continue
        for run, colour in (("gan", "tab:red"), ("control", "tab:blue")):
            points = sorted((step, row) for (kind, step), row in rows.items() if kind == run)
            if start.get(metric, "") not in ("", None):
                points = [(0, start), *points]
            steps = [step for step, _ in points]
            values = [number(row.get(metric, "")) for _, row in points]
            if metric == "val_kid":
                axis.errorbar(steps, values, yerr=[number(r.get("val_kid_std", "")) for _, r
                                                   in points], fmt="o-", color=colour, ms=3,
                              capsize=2, label=LABELS[run])
            else:
                axis.plot(steps, values, "o-", color=colour, ms=3, label=LABELS[run])
        axis.legend(fontsize=8)
    figure.suptitle("Issue 40: the GAN against its control along stage 2 (measured, never "
                    "used to choose a checkpoint)", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path,
                        default=Path.home() / "runs" / "gan_vs_control")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/photos"),
                        help="the shared photos folder, holding val768 and more/val768")
    parser.add_argument("--no_scoring", action="store_true",
                        help="only the shipped photos and the summaries (no snapshot scored)")
    args = parser.parse_args()
    rows = read_rows()
    for run in RUNS:
        run_dir = args.runs / run
        scalars = training_scalars(run_dir) if (run_dir / "train").is_dir() else {}
        for step, scores in shipped_photo_scores(run_dir).items():
            row = rows.setdefault((run, step), {"run": run, "step": step})
            row.update(scores)
            if scalars:
                row.update(balance_at(scalars, step))
    folders = [args.photos / name for name in FOLDERS]
    todo = [(run, step, path) for run, step, path in snapshots(args.runs)
            if rows.get((run, step), {}).get("val_kid", "") in ("", None)]
    if todo and not args.no_scoring:
        if not all(folder.is_dir() for folder in folders):
            print(f"snapshots not scored: {', '.join(map(str, folders))} not there")
        else:
            from hific_tf.evaluation.report import load_measures
            from hific_tf.storage.images import list_images, read_image

            images = {path.name: read_image(path) for folder in folders
                      for path in list_images(folder)}
            measures = load_measures()
            for index, (run, step, path) in enumerate(todo, start=1):
                print(f"[{index}/{len(todo)}] {run} at step {step}: {path}", flush=True)
                row = rows.setdefault((run, step), {"run": run, "step": step})
                row.update(score_snapshot(path, images, measures))
                write_rows(rows)  # an interrupted pass keeps what it scored
    write_rows(rows)
    plot(rows, HERE / "curves.png")
    print(f"{len(rows)} points in {CSV} and {HERE / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
