r"""Is the GAN's NIQE gain a property of the recipe or of one seed? Pairs across seeds.

Reads results that `experiments/gan_niqe.py` wrote for one seed each, every one holding a
GAN run (β > 0) and its control (β = 0, the same recipe otherwise), and compares the two
at every step both kept: the difference of mean NIQE on val768 (GAN minus control; below 0
means the GAN helps) and on how many photos the GAN run scores lower than the control at
the same step. Writes gaps.csv, summary.json (with the machine) and gaps.png to
experiments/results/gan_niqe_seeds/ (or --output). Reads CSVs only: no model is run.

    .venv/bin/python experiments/gan_niqe_seeds.py \
        --series=0:experiments/results/gan_niqe_bundled \
        --series=1:experiments/results/gan_niqe_bundled_seed1 \
        --series=2:experiments/results/gan_niqe_bundled_seed2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

# What the results ran on: benchmarks/machine.py, shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from machine import machine

RESULTS = Path(__file__).parent / "results" / "gan_niqe_seeds"
# The check of tests/test_bundled.py: a lower mean and lower on at least 4 of the 5 photos.
PHOTOS_NEEDED = 4


def read_pair(folder: Path) -> tuple[dict, dict]:
    """Per (step, photo) NIQE and bpp of the GAN run and of its control in `folder`."""
    with (folder / "per_checkpoint.csv").open() as stream:
        rows = [row for row in csv.DictReader(stream) if row["stage"] == "hific"]
    runs = {(row["run"], float(row["beta"])) for row in rows}
    gan_runs = [run for run, beta in runs if beta > 0]
    control_runs = [run for run, beta in runs if beta == 0]
    if len(gan_runs) != 1 or len(control_runs) != 1:
        raise SystemExit(f"{folder} must hold one stage-2 run with β > 0 and one with "
                         f"β = 0; it holds {sorted(runs)}")

    def table(run: str) -> dict:
        return {(int(row["step"]), row["photo"]): (float(row["niqe"]), float(row["bpp"]))
                for row in rows if row["run"] == run}

    return table(gan_runs[0]), table(control_runs[0])


def compare(seed: str, gan: dict, control: dict) -> list[dict]:
    """One entry per step that both runs kept."""
    entries = []
    for step in sorted({step for step, _ in gan} & {step for step, _ in control}):
        photos = sorted(photo for s, photo in gan if s == step)
        gan_niqe, gan_bpp = np.array([gan[step, photo] for photo in photos]).T
        control_niqe, control_bpp = np.array([control[step, photo] for photo in photos]).T
        entries.append({
            "seed": seed, "step": step,
            "gan_niqe": float(gan_niqe.mean()), "control_niqe": float(control_niqe.mean()),
            "gap": float(gan_niqe.mean() - control_niqe.mean()),
            "photos_gan_lower": int((gan_niqe < control_niqe).sum()), "photos": len(photos),
            "gan_bpp": float(gan_bpp.mean()), "control_bpp": float(control_bpp.mean())})
    return entries


def plot(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for seed in sorted({e["seed"] for e in entries}):
        points = [e for e in entries if e["seed"] == seed]
        axis.plot([e["step"] for e in points], [e["gap"] for e in points], "o-",
                  label=f"seed {seed} (GAN lower on "
                        f"{', '.join(str(e['photos_gan_lower']) for e in points)} photos)")
    axis.axhline(0, color="black", linestyle="--")
    axis.set_xlabel("stage-2 step")
    axis.set_ylabel("mean NIQE, GAN run minus control (below 0: GAN better)")
    axis.set_title("The same recipe with β = 0.03 and β = 0, per seed, on val768")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", action="append", required=True,
                        help="SEED:FOLDER, a folder that experiments/gan_niqe.py wrote")
    parser.add_argument("--output", default=str(RESULTS), help="folder for the results")
    arguments = parser.parse_args()
    entries = []
    for series in arguments.series:
        seed, separator, folder = series.partition(":")
        if not separator or not (Path(folder) / "per_checkpoint.csv").exists():
            raise SystemExit(f"--series={series}: expected SEED:FOLDER with a "
                             "per_checkpoint.csv from experiments/gan_niqe.py")
        entries += compare(seed, *read_pair(Path(folder)))
    last = {entry["seed"]: entry for entry in entries}  # entries run in step order
    passed = [seed for seed, entry in last.items()
              if entry["gap"] < 0 and entry["photos_gan_lower"] >= PHOTOS_NEEDED]
    from hific_tf.evaluation.report import write_csv  # loads TensorFlow

    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(entries, output / "gaps.csv")
    (output / "summary.json").write_text(json.dumps(
        {"machine": machine(), "series": arguments.series, "steps": entries,
         "final_gap_mean": float(np.mean([e["gap"] for e in last.values()])),
         "seeds_passing_at_the_last_step": passed}, indent=2) + "\n")
    plot(entries, output / "gaps.png")
    for entry in entries:
        print(f"seed {entry['seed']} step {entry['step']}: GAN {entry['gan_niqe']:.2f} "
              f"control {entry['control_niqe']:.2f} gap {entry['gap']:+.2f}, "
              f"GAN lower on {entry['photos_gan_lower']} of {entry['photos']}")
    print(f"seeds that pass at the last step (lower mean, lower on {PHOTOS_NEEDED}+ photos): "
          f"{len(passed)} of {len(last)}; results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
