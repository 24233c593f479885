"""The bundled pair's learning curves: what each run of train.sh scored on the three photos
the repository ships every 2 000 steps (its run directory's validation.jsonl), merged into
curves.csv beside this script (rows already there are kept: run directories may not outlive
a session) and drawn as curves.png. Steps count from the start of stage 1; stage 2's runs
continue stage 1's count.

    python experiments/bundled_training/curves.py [RUNS]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSV = HERE / "curves.csv"
RUNS = ("stage1", "gan", "control")
LABELS = {"stage1": "stage 1 (MSE + LPIPS)", "gan": "hific-small (stage 2, GAN)",
          "control": "mselpips-small (stage 1 continued)"}
STAGE1_STEPS = 20_000  # train.sh's STAGE1_STEPS: where the stage-2 runs' counts begin
COLUMNS = ("run", "step", "bpp", "psnr", "lpips", "niqe")
# bpp: the model's estimate for the rounded latents on the whole photo (as coded, less the
# file's few header bytes); PSNR, LPIPS (AlexNet) and NIQE of the reconstruction.


def offset(run_dir: Path) -> int:
    """Steps done before the run directory began: a run continued from carried weights
    (train.sh writes them in step_offset), and stage 1's length for the stage-2 runs."""
    marker = run_dir / "step_offset"
    carried = int(marker.read_text()) if marker.exists() else 0
    return carried + (STAGE1_STEPS if run_dir.name != "stage1" else 0)


def read_runs(runs: Path) -> list[dict]:
    rows = []
    for run in RUNS:
        records = runs / run / "validation.jsonl"
        if not records.exists():
            continue
        for line in records.read_text().splitlines():
            record = json.loads(line)
            rows.append({"run": run, "step": record["step"] + offset(runs / run),
                         **{name: record.get(name, "") for name in COLUMNS[2:]}})
    return rows


def merge(existing: list[dict], new: list[dict]) -> list[dict]:
    """New rows replace existing ones of the same run and step."""
    merged = {(row["run"], int(row["step"])): row for row in existing}
    merged.update({(row["run"], int(row["step"])): row for row in new})
    return [merged[key] for key in sorted(merged, key=lambda k: (RUNS.index(k[0]), k[1]))]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for run, colour in zip(RUNS, ("tab:gray", "tab:red", "tab:blue"), strict=True):
        points = [row for row in rows if row["run"] == run]
        if not points:
            continue
        steps = [int(row["step"]) for row in points]
        for axis, name in zip(axes, COLUMNS[2:], strict=True):
            values = [float(row[name]) if row[name] != "" else float("nan") for row in points]
            axis.plot(steps, values, "o-", color=colour, ms=3, label=LABELS[run])
    for axis, title in zip(axes, ("bpp (estimate)", "PSNR (dB, higher is better)",
                                  "LPIPS (lower is better)", "NIQE (lower is better)"),
                           strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("training step (from the start of stage 1)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Bundled small models, mean over the three photos in photos/ "
                    "(never trained on)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path, default=Path.home() / "runs" / "bundled")
    args = parser.parse_args()
    existing = []
    if CSV.exists():
        with CSV.open() as stream:
            existing = list(csv.DictReader(stream))
    rows = merge(existing, read_runs(args.runs))
    with CSV.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, CSV.with_suffix(".png"))
    print(f"{len(rows)} points; wrote {CSV} and {CSV.with_suffix('.png')}")


if __name__ == "__main__":
    main()
