"""Issue 40's answer: GAN minus control on the 20 validation photos at the last step of both
runs, with 95 % bootstrap intervals, and the same crop from both.

Both runs' last checkpoints code the 20 validation photos (photos/val768 and
photos/more/val768 of the shared data) as real files; per photo bpp, PSNR, MS-SSIM, LPIPS and
NIQE, and the Inception features of its FID/256 patches, are measured as in
experiments/paper_claim_small/intervals.py (whose measurement code this reuses, cached in
RUNS/measurements). Then GAN minus control:

- bpp as the GAN's mean over the control's, minus 1; PSNR, MS-SSIM, LPIPS and NIQE as the
  difference of means: a paired percentile bootstrap over photos (one resample of photos
  serves both runs);
- FID/256 and KID/256 recomputed on resampled patches: a paired percentile bootstrap over
  the FID/256 patches (one resample of patch positions serves the originals and both runs).

The aim, declared in issue 40 before any of it was measured: the GAN's NIQE, FID/256 and
KID/256 below the control's (the interval's upper end below 0) at a rate within 5 % of it.
Writes intervals.json, per_photo.csv, set_metrics.csv, intervals.png and figure.png into
results/ beside this script and prints the answer in one sentence.

    python experiments/gan_vs_control/compare.py [RUNS] --photos=../shared/data/photos
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
sys.path.insert(0, str(HERE.parent / "paper_claim_small"))
import intervals  # noqa: E402
from intervals import fid_few_points, kid_one_block  # noqa: E402
from machine import machine  # noqa: E402

RESULTS = HERE / "results"
PER_PHOTO = intervals.PER_PHOTO
SET_METRICS = intervals.SET_METRICS
FIGURE_PHOTO = 0  # the figure's crop: the first validation photo, chosen before measuring
BPP_TOLERANCE = 0.05


def set_metric_difference(real: np.ndarray, gan: np.ndarray, control: np.ndarray,
                          sample: np.ndarray) -> dict[str, float]:
    """FID and KID of the GAN minus the control's, over the patches at `sample`."""
    real, gan, control = real[sample], gan[sample], control[sample]
    return {"fid": fid_few_points(real, gan) - fid_few_points(real, control),
            "kid": kid_one_block(real, gan) - kid_one_block(real, control)}


def per_photo_difference(gan: dict, control: dict, sample: np.ndarray) -> dict[str, float]:
    result = {name: float(gan[name][sample].mean() - control[name][sample].mean())
              for name in PER_PHOTO[1:]}
    result["bpp"] = float(gan["bpp"][sample].mean() / control["bpp"][sample].mean() - 1.0)
    return result


def compare(real: np.ndarray, gan: dict, control: dict, resamples: int,
            rng: np.random.Generator) -> dict[str, dict]:
    """Point difference and 95 % interval of every metric (GAN minus control)."""
    photos = len(gan["bpp"])
    flat = [x.reshape(-1, x.shape[-1]) for x in (real, gan["features"], control["features"])]
    patches = len(flat[0])
    point = {**per_photo_difference(gan, control, np.arange(photos)),
             **set_metric_difference(*flat, np.arange(patches))}
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(resamples):
        for name, value in per_photo_difference(
                gan, control, rng.integers(0, photos, photos)).items():
            draws[name].append(value)
        for name, value in set_metric_difference(
                *flat, rng.integers(0, patches, patches)).items():
            draws[name].append(value)
    return intervals.summarise(point, {name: np.array(v) for name, v in draws.items()})


def aim(result: dict[str, dict]) -> dict[str, bool]:
    checks = {f"{name}_lower": result[name]["high"] < 0 for name in ("niqe", "fid", "kid")}
    checks["rate_within_5_percent"] = abs(result["bpp"]["difference"]) <= BPP_TOLERANCE
    checks["holds"] = all(checks.values())
    return checks


def sentence(result: dict[str, dict], checks: dict[str, bool]) -> str:
    def part(name: str, label: str) -> str:
        row = result[name]
        return f"{label} {row['difference']:+.4g} [{row['low']:+.4g}, {row['high']:+.4g}]"

    verdict = "helps" if checks["holds"] else "does not help by the declared aim"
    return (f"With the authors' step, the GAN {verdict} at this scale: GAN minus control on "
            f"the 20 validation photos, {part('niqe', 'NIQE')}, {part('fid', 'FID/256')}, "
            f"{part('kid', 'KID/256')}, at a rate {result['bpp']['difference']:+.1%} of the "
            f"control's (95 % bootstrap intervals).")


def plot(result: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*PER_PHOTO, *SET_METRICS]
    figure, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.6))
    for axis, name in zip(axes, names, strict=True):
        row = result[name]
        axis.errorbar([0], [row["difference"]], yerr=[[row["difference"] - row["low"]],
                                                      [row["high"] - row["difference"]]],
                      fmt="o", color="black", capsize=4)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xticks([])
        better = "lower" if intervals.LOWER_IS_BETTER[name] else "higher"
        axis.set_title("bpp (GAN / control − 1)" if name == "bpp"
                       else f"{name.upper()}\n({better} better)", fontsize=9)
    figure.suptitle("GAN minus control, last step of both runs, 20 validation photos, 95 % "
                    "bootstrap intervals", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path,
                        default=Path.home() / "runs" / "gan_vs_control")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/photos"))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--unfinished", action="store_true",
                        help="compare the runs' latest checkpoints before their last step "
                             "(a trial of this script; never the reported answer)")
    args = parser.parse_args()
    photos = intervals.validation_photos(args.photos)
    if len(photos) != 20:
        print(f"expected the 20 validation photos under {args.photos}, found {len(photos)}",
              file=sys.stderr)
        return 2
    run_dirs = {run: args.runs / run for run in ("gan", "control")}
    unfinished = [run for run, path in run_dirs.items() if not intervals.finished(path)]
    if unfinished and not args.unfinished:
        print(f"not trained to the end yet: {', '.join(unfinished)} (rerun train.sh)",
              file=sys.stderr)
        return 2
    from hific_tf.codec import load_codec
    from hific_tf.evaluation.report import load_measures, side_by_side_figure
    from hific_tf.storage.images import read_image

    measures = load_measures()
    if measures.skipped:
        print(f"the perceptual networks are missing: {measures.skipped}", file=sys.stderr)
        return 2
    cache = args.runs / "measurements"
    steps = {run: latest_step(path) for run, path in run_dirs.items()}
    real = intervals.measure_run(None, photos, measures, cache / "originals.npz")["features"]
    measured = {run: intervals.measure_run(path, photos, measures,
                                           cache / f"{run}-{steps[run]}.npz")
                for run, path in run_dirs.items()}
    result = compare(real, measured["gan"], measured["control"], args.resamples,
                     np.random.default_rng(0))
    checks = aim(result)
    answer = sentence(result, checks)

    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "per_photo.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["run", "step", "photo", *PER_PHOTO])
        for run, values in measured.items():
            for index, path in enumerate(photos):
                writer.writerow([run, steps[run], path.name,
                                 *(f"{values[name][index]:.6g}" for name in PER_PHOTO)])
    flat_real = real.reshape(-1, real.shape[-1])
    with (args.output / "set_metrics.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["run", "step", "patches", "fid", "kid", *PER_PHOTO])
        for run, values in measured.items():
            generated = values["features"].reshape(-1, real.shape[-1])
            writer.writerow([run, steps[run], len(generated),
                             f"{fid_few_points(flat_real, generated):.4f}",
                             f"{kid_one_block(flat_real, generated):.6f}",
                             *(f"{values[name].mean():.6g}" for name in PER_PHOTO)])
    document = {"experiment": "gan_vs_control", "date": time.strftime("%Y-%m-%d"),
                "machine": machine(), "steps": steps, "finished": not unfinished,
                "photos": [path.name for path in photos],
                "patches_per_photo": int(real.shape[1]), "resamples": args.resamples,
                "method": ("percentile bootstrap, paired: photos resampled for bpp (GAN mean / "
                           "control mean - 1), PSNR, MS-SSIM, LPIPS and NIQE; FID/256 patch "
                           "positions resampled for FID and KID"),
                "aim": checks, "answer": answer, "gan_minus_control": result}
    (args.output / "intervals.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(result, args.output / "intervals.png")
    original = read_image(photos[FIGURE_PHOTO])
    panels = []
    for run, path in run_dirs.items():
        codec = load_codec(path)
        data = codec.compress(original)
        bpp = 8 * len(data) / (original.shape[0] * original.shape[1])
        panels.append((f"{run} (step {steps[run]}), {bpp:.3f} bpp", codec.decompress(data)))
    side_by_side_figure(original, panels, args.output / "figure.png")
    for name, row in result.items():
        print(f"{name:<8} {row['difference']:>+12.5f}  [{row['low']:+.5f}, {row['high']:+.5f}]")
    print(("TRIAL (unfinished runs): " if unfinished else "") + answer)
    return 0


def latest_step(run_dir: Path) -> int:
    """The step of the run's latest checkpoint (after the carried steps, if any)."""
    import tensorflow as tf

    carried = run_dir / "step_offset"
    return (int(tf.train.latest_checkpoint(str(run_dir)).rsplit("-", 1)[1]) +
            (int(carried.read_text()) if carried.exists() else 0))


if __name__ == "__main__":
    sys.exit(main())
