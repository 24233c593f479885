"""The declared aim along training: every weights snapshot train.sh keeps (each run's
snapshots/step-N.npz, every 2 000 steps) scored on the 20 validation photos as the shipped
pair is (real files; bpp, PSNR, LPIPS, NIQE, FID/256, KID/256), with JPEG aimed at each
GAN snapshot's rate; rows go to snapshot_scores.csv beside this script (rows already there
are kept and not scored again: snapshots do not outlive ~/runs), the aim's four comparisons
(aim.py) drawn over the steps in aim.png. Measured, never used to choose: the last
checkpoint of each run ships whatever these say.

    python experiments/bundled_training/score_snapshots.py [RUNS] --photos=../shared/data/photos
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import aim
import curves

HERE = Path(__file__).resolve().parent
CSV = HERE / "snapshot_scores.csv"
FOLDERS = ("val768", "more/val768")  # the 20 validation photos
PAIRING_STEPS = 1_000  # a GAN snapshot is judged against the control's within this many
COLUMNS = ("run", "step", "codec", "bpp", "all_reached", "psnr", "lpips", "niqe", "fid", "kid",
           "kid_std", "patches")
# run: the snapshot's run ("stage1" only for its last step, where both stage-2 runs begin);
# codec: that snapshot's model ("model"), or JPEG aimed at its mean bpp ("jpeg").


def snapshots(runs: Path) -> list[tuple[str, int, Path]]:
    """(run, step from the start of stage 1, file) of the snapshots there are."""
    found = []
    for run in curves.RUNS:
        for path in sorted((runs / run / "snapshots").glob("step-*.npz")):
            step = int(path.stem.split("-")[1]) + curves.offset(runs / run)
            if run != "stage1" or step == curves.STAGE1_STEPS:
                found.append((run, step, path))
    return found


def read_rows() -> list[dict]:
    if not CSV.exists():
        return []
    with CSV.open() as stream:
        return list(csv.DictReader(stream))


def write_rows(rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: (curves.RUNS.index(r["run"]), int(r["step"]), r["codec"]))
    with CSV.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def score(path: Path, images: dict, measures: object, with_jpeg: bool) -> list[dict]:
    """The snapshot's summary on `images`, and JPEG's at its rate when `with_jpeg`."""
    from hific_tf.codec import load_codec
    from hific_tf.evaluation import report
    from hific_tf.evaluation.classic_codecs import get_codec

    _, (model,) = report.evaluate(
        images, [report.model_entry(path.stem, load_codec(path))], measures)
    results = [{**model, "codec": "model"}]
    if with_jpeg:
        entry = report.classic_entry("jpeg", get_codec("jpeg"), model["bpp"])
        _, (jpeg,) = report.evaluate(images, [entry], measures)
        results.append({**jpeg, "codec": "jpeg"})
    return results


def aim_over_steps(rows: list[dict]) -> list[tuple[int, list[dict]]]:
    """aim.checks at every GAN step scored with its JPEG, against the control's snapshot
    nearest in step (within PAIRING_STEPS: runs continued from carried weights snapshot at
    their own offsets); stage 1's last step stands for both runs' start."""
    table = {(r["run"], int(r["step"]), r["codec"]): as_summary(r) for r in rows}
    control_steps = [step for run, step, codec in table if run == "control"]
    result = []
    for run, step, codec in sorted(table, key=lambda key: key[1]):
        if codec != "model" or run not in ("stage1", "gan") or (run, step, "jpeg") not in table:
            continue
        if run == "stage1":
            control = table[(run, step, "model")]
        else:
            nearest = min(control_steps, key=lambda other: abs(other - step), default=None)
            if nearest is None or abs(nearest - step) > PAIRING_STEPS:
                continue
            control = table[("control", nearest, "model")]
        result.append((step, aim.checks(table[(run, step, "model")], control,
                                        table[(run, step, "jpeg")])))
    return result


def as_summary(row: dict) -> dict:
    """A row, as read from the CSV (strings) or just scored, as aim.checks takes it."""
    values = {name: float(row[name]) if str(row[name]) not in ("", "None") else None
              for name in COLUMNS[3:] if name != "all_reached"}
    return {**values, "all_reached": str(row["all_reached"]) == "True"}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {("gan", "model"): ("hific-small (GAN)", "tab:red"),
              ("control", "model"): ("mselpips-small (control)", "tab:blue"),
              ("gan", "jpeg"): ("JPEG at hific-small's rate", "tab:green")}
    figure, axes = plt.subplots(1, 4, figsize=(17, 3.9))
    for (run, codec), (label, colour) in series.items():
        # Both stage-2 runs (and JPEG at its rate) start from stage 1's last snapshot.
        points = sorted((int(r["step"]), as_summary(r)) for r in rows if r["codec"] == codec
                        and (r["run"] == run or (r["run"] == "stage1"
                                                 and int(r["step"]) == curves.STAGE1_STEPS)))
        if not points:
            continue
        steps = [step for step, _ in points]
        for axis, metric in zip(axes, ("bpp", "lpips", "fid", "kid"), strict=True):
            values = [s[metric] if s[metric] is not None else float("nan") for _, s in points]
            if metric == "kid":
                axis.errorbar(steps, values, yerr=[s["kid_std"] for _, s in points],
                              fmt="o-", color=colour, ms=3, capsize=2, label=label)
            else:
                axis.plot(steps, values, "o-", color=colour, ms=3, label=label)
    for axis, title in zip(axes, ("bpp (coded files)", "LPIPS (aim 1: GAN below JPEG)",
                                  "FID/256 (aim 3: GAN below control)",
                                  "KID/256 ± s.e. (aims 2 and 4)"), strict=True):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("training step (from the start of stage 1)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("The declared aim along stage 2, on the 20 validation photos (measured, "
                    "never used to choose a checkpoint)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path, default=Path.home() / "runs" / "bundled")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/photos"),
                        help="the shared photos folder, holding val768 and more/val768")
    args = parser.parse_args()
    folders = [args.photos / name for name in FOLDERS]
    if not all(folder.is_dir() for folder in folders):
        print(f"skipped: {', '.join(map(str, folders))} not there (the shared photos)")
        return 0
    from hific_tf.evaluation.report import load_measures
    from hific_tf.storage.images import list_images, read_image

    rows = read_rows()
    done = {(r["run"], int(r["step"])) for r in rows}
    todo = [(run, step, path) for run, step, path in snapshots(args.runs)
            if (run, step) not in done]
    if todo:
        images = {path.name: read_image(path) for folder in folders
                  for path in list_images(folder)}
        measures = load_measures()
        for number, (run, step, path) in enumerate(todo, start=1):
            print(f"[{number}/{len(todo)}] {run} at step {step}: {path}", flush=True)
            for result in score(path, images, measures, with_jpeg=run != "control"):
                rows.append({**result, "run": run, "step": step})
            write_rows(rows)  # after each snapshot: an interrupted pass keeps what it scored
    write_rows(rows)
    plot(rows, HERE / "aim.png")
    for step, results in aim_over_steps(rows):
        print(f"step {step}: " + ", ".join(
            f"aim {r['aim']} {r['margin']:+.4g} ({'held' if r['held'] else 'not held'})"
            for r in results))
    print(f"{len(todo)} snapshots scored; {CSV} and {HERE / 'aim.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
