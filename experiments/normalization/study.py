"""The normalization study (docs/ablations.md): does InstanceNorm, trained on crops, shift
the brightness of full-size images where ChannelNorm does not?

Codes the 20 validation photos (photos/val768 and photos/more/val768 of the shared data,
768 x 512) with each model that train.sh wrote (RUNS/channel and RUNS/instance), as real
`.hfc` files, at full size and as their 128 x 128 centre crops (the training crops' size).
Per photo, model and size: the mean brightness shift per channel (mean of the
reconstruction minus mean of the original, in grey levels), bpp, PSNR and LPIPS. Then, per
model and metric, the difference full size minus crop, with a 95 % percentile bootstrap
interval over photos (the photos resampled with replacement, 10 000 times, fixed seed), and
the same for that difference's difference between the models (InstanceNorm minus
ChannelNorm: one resample of photos serves both).

    .venv/bin/python experiments/normalization/study.py \\
        --runs=$HOME/runs/normalization --photos=../shared/data/photos

Writes per_photo.csv, summary.json, differences.png and same_photo.png (one photo at full
size from both models beside the original) into --output.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from machine import machine

RESULTS = Path(__file__).parent / "results"
MODELS = ("channel", "instance")  # train.sh's run directories, one per normalization
SIZES = ("full", "crop")
CROP = 128
CHANNELS = ("r", "g", "b")
METRICS = ("shift_mean", *(f"shift_{c}" for c in CHANNELS), "bpp", "psnr", "lpips")


def brightness_shift(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Mean of the reconstruction minus mean of the original, per channel, in grey levels
    (uint8 [H, W, 3] both): negative where the model darkens."""
    return (reconstruction.astype(np.float64).mean(axis=(0, 1))
            - original.astype(np.float64).mean(axis=(0, 1)))


def bootstrap_interval(values: np.ndarray, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float, float]:
    """The mean of `values` (one per photo) and its 95 % percentile bootstrap interval:
    the photos resampled with replacement `resamples` times."""
    values = np.asarray(values, np.float64)
    draws = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def validation_photos(shared_photos: Path) -> list[Path]:
    from hific_tf.storage.images import list_images

    return [*list_images(shared_photos / "val768"), *list_images(shared_photos / "more/val768")]


def unfinished(run_dir: Path) -> bool:
    """Whether a run of train.sh has not reached its num_steps (a checkpoint directory
    without train_config.json is taken as it is)."""
    from hific_tf.configs import TrainingConfig

    saved = run_dir / "train_config.json"
    if not saved.is_file():
        return False
    steps = TrainingConfig.from_json(saved.read_text()).run.num_steps
    state = run_dir / "checkpoint"
    return not (state.is_file() and f"ckpt-{steps}\"" in state.read_text())


def measure(run_dir: Path, photos: list[Path], lpips) -> tuple[dict, dict]:
    """Per-photo metrics of one model at both sizes ({size: {metric: [values]}}), and its
    full-size reconstructions by photo name."""
    from hific_tf.codec import load_codec
    from hific_tf.evaluation import metrics
    from hific_tf.storage.images import read_image
    from hific_tf.storage.zoo import reference_crop

    codec = load_codec(run_dir)
    rows = {size: {name: [] for name in METRICS} for size in SIZES}
    reconstructions = {}
    started = time.monotonic()
    for index, path in enumerate(photos, start=1):
        photo = read_image(path)
        for size, image in (("full", photo), ("crop", reference_crop(photo, CROP))):
            data = codec.compress(image)
            reconstruction = codec.decompress(data)
            shift = brightness_shift(image, reconstruction)
            values = rows[size]
            values["shift_mean"].append(float(shift.mean()))
            for channel, value in zip(CHANNELS, shift, strict=True):
                values[f"shift_{channel}"].append(float(value))
            values["bpp"].append(8 * len(data) / (image.shape[0] * image.shape[1]))
            values["psnr"].append(float(metrics.psnr(image, reconstruction)))
            values["lpips"].append(lpips(image, reconstruction))
            if size == "full":
                reconstructions[path.name] = reconstruction
        elapsed = time.monotonic() - started
        print(f"  {run_dir.name}: photo {index}/{len(photos)}, "
              f"{elapsed / index * (len(photos) - index):.0f} s left", flush=True)
    return rows, reconstructions


def summarise(measured: dict, resamples: int) -> dict:
    """Per model and metric: the means at both sizes and full minus crop with its interval;
    then that gap's difference between the models."""
    summary = {"full_minus_crop": {}, "instance_minus_channel": {}}
    gaps = {}
    for model, rows in measured.items():
        summary["full_minus_crop"][model] = {}
        for name in METRICS:
            full, crop = np.array(rows["full"][name]), np.array(rows["crop"][name])
            gaps[(model, name)] = full - crop
            mean, low, high = bootstrap_interval(full - crop, resamples)
            summary["full_minus_crop"][model][name] = {
                "full": float(full.mean()), "crop": float(crop.mean()),
                "difference": mean, "low": low, "high": high}
    for name in METRICS:
        mean, low, high = bootstrap_interval(
            gaps[("instance", name)] - gaps[("channel", name)], resamples)
        summary["instance_minus_channel"][name] = {"difference": mean, "low": low,
                                                   "high": high}
    return summary


def plot_differences(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = ("shift_mean", "shift_r", "shift_g", "shift_b", "psnr", "lpips")
    figure, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3))
    for axis, name in zip(axes, shown, strict=True):
        for y, model in enumerate(MODELS):
            row = summary["full_minus_crop"][model][name]
            axis.errorbar(row["difference"], y,
                          xerr=[[row["difference"] - row["low"]],
                                [row["high"] - row["difference"]]],
                          fmt="o", capsize=3, color=("tab:blue", "tab:orange")[y])
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set_yticks(range(len(MODELS)), [f"{model}norm" for model in MODELS])
        axis.set_ylim(-0.5, len(MODELS) - 0.5)
        axis.invert_yaxis()
        unit = " (grey levels)" if name.startswith("shift") else ""
        axis.set_title(f"{name}{unit}", fontsize=9)
    figure.suptitle("full size minus 128 x 128 centre crop on the 20 validation photos, 95 % "
                    "bootstrap intervals over photos", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_same_photo(original: np.ndarray, reconstructions: dict[str, np.ndarray],
                    shifts: dict[str, float], name: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("original", original, None)] + [
        (f"{model}norm", reconstructions[model], shifts[model]) for model in MODELS]
    height, width = original.shape[:2]
    figure, axes = plt.subplots(1, len(panels),
                                figsize=(4.5 * len(panels), 4.5 * height / width + 0.6))
    for axis, (label, image, shift) in zip(axes, panels, strict=True):
        axis.imshow(image)
        axis.set_axis_off()
        axis.set_title(label if shift is None else f"{label}: brightness {shift:+.2f}",
                       fontsize=9)
    figure.suptitle(f"{name} at full size (the photo where InstanceNorm's mean brightness "
                    "shift is largest)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path.home() / "runs" / "normalization",
                        help="train.sh's run folder (holding channel/ and instance/)")
    parser.add_argument("--photos", type=Path, required=True,
                        help="the shared photos folder (holding val768 and more/val768)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--resamples", type=int, default=10_000)
    arguments = parser.parse_args()
    photos = validation_photos(arguments.photos)
    if len(photos) != 20:
        print(f"expected the 20 validation photos under {arguments.photos}, found "
              f"{len(photos)}", file=sys.stderr)
        return 2
    run_dirs = {model: arguments.runs / model for model in MODELS}
    missing = [str(d) for d in run_dirs.values() if not d.is_dir()]
    if missing:
        print(f"no run directory {', '.join(missing)} (run train.sh)", file=sys.stderr)
        return 2
    waiting = [model for model, run_dir in run_dirs.items() if unfinished(run_dir)]
    if waiting:
        print(f"not trained to the end yet: {', '.join(waiting)} (rerun train.sh)",
              file=sys.stderr)
        return 2

    from hific_tf.evaluation.perceptual.lpips import load_lpips
    from hific_tf.evaluation.report import lpips_distance
    from hific_tf.storage.images import read_image

    lpips = lpips_distance(load_lpips())
    measured, reconstructions = {}, {}
    for model, run_dir in run_dirs.items():
        measured[model], reconstructions[model] = measure(run_dir, photos, lpips)
    summary = summarise(measured, arguments.resamples)

    output = arguments.output
    output.mkdir(parents=True, exist_ok=True)
    with (output / "per_photo.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["model", "photo", "size", *METRICS])
        for model in MODELS:
            for size in SIZES:
                for index, path in enumerate(photos):
                    writer.writerow([model, path.name, size,
                                     *(f"{measured[model][size][name][index]:.6g}"
                                       for name in METRICS)])
    shifts = np.array(measured["instance"]["full"]["shift_mean"])
    shown = int(np.argmax(np.abs(shifts)))
    document = {
        "experiment": "normalization",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "runs": {model: str(run_dir) for model, run_dir in run_dirs.items()},
        "photos": [path.name for path in photos],
        "crop": CROP,
        "resamples": arguments.resamples,
        "method": ("each photo coded as a real file at full size and as its centre crop; "
                   "brightness shift = mean(reconstruction) - mean(original) per channel in "
                   "grey levels; full minus crop per photo, then the mean over photos with "
                   "a 95 % percentile bootstrap interval (photos resampled with replacement, "
                   "numpy default_rng(0)); instance_minus_channel: the paired difference of "
                   "the two models' full-minus-crop gaps"),
        "same_photo": photos[shown].name,
        **summary,
    }
    (output / "summary.json").write_text(json.dumps(document, indent=1) + "\n")
    plot_differences(summary, output / "differences.png")
    plot_same_photo(read_image(photos[shown]),
                    {model: reconstructions[model][photos[shown].name] for model in MODELS},
                    {model: measured[model]["full"]["shift_mean"][shown] for model in MODELS},
                    photos[shown].name, output / "same_photo.png")
    print(f"{'metric':<11} " + " ".join(f"{model + ' full - crop':>30}" for model in MODELS))
    for name in METRICS:
        cells = []
        for model in MODELS:
            row = summary["full_minus_crop"][model][name]
            cells.append(f"{row['difference']:>+9.3f} [{row['low']:+.3f}, {row['high']:+.3f}]")
        print(f"{name:<11} " + " ".join(f"{cell:>30}" for cell in cells))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
