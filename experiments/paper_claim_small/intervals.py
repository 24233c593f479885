"""The paper's claim at small scale (issue 24): GAN minus control, per metric, with 95 %
bootstrap intervals over photos and seeds.

Codes the 20 validation photos (photos/val768 and photos/more/val768 of the shared data)
with every stage-2 run that train.sh wrote (gan-seedN and its control control-seedN) and
measures, per photo, bpp, PSNR, MS-SSIM, LPIPS and NIQE, and the Inception features of its
FID/256 patches (hific_tf.evaluation.report's measures). Then, for each metric, the difference
GAN minus control:

- per seed: the photos resampled with replacement (a paired bootstrap: one resample of
  photos serves both models);
- pooled: a two-level bootstrap, the seeds resampled with replacement and, independently,
  the photos (one resample of photos for all seeds), the difference averaged over the
  resampled seeds.

Per-photo metrics are averaged over the resampled photos; FID and KID are recomputed over the
FID/256 patches of the resampled photos (a photo drawn twice contributes its patches twice).
bpp is reported as the GAN's mean over the control's, minus 1. The interval is the 2.5th to
97.5th percentile of the resampled differences.

    .venv/bin/python experiments/paper_claim_small/intervals.py \\
        --runs=$HOME/runs/paper_claim_small --photos=../shared/data/photos

Measurements are kept in --runs (measurements/*.npz), so a second call only resamples.
Writes per_photo.csv, set_metrics.csv, intervals.json and intervals.png into --output.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from machine import machine

RESULTS = Path(__file__).parent / "results"
PER_PHOTO = ("bpp", "psnr", "ms_ssim", "lpips", "niqe")
SET_METRICS = ("fid", "kid")
LOWER_IS_BETTER = {"bpp": True, "psnr": False, "ms_ssim": False, "lpips": True, "niqe": True,
                   "fid": True, "kid": True}
RUN_NAME = re.compile(r"^(gan|control)-seed(\d+)$")


def kid_one_block(real: np.ndarray, generated: np.ndarray) -> float:
    """KID's unbiased MMD² (kernel (x·y / d + 1)³) over one block of features [N, D], in
    NumPy: for resampling many subsets of the same features (a bootstrap) cheaply."""
    dimensions = real.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / dimensions + 1.0) ** 3

    m, n = len(real), len(generated)
    k_rr, k_gg, k_rg = kernel(real, real), kernel(generated, generated), kernel(real, generated)
    return float((k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
                 + (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1)) - 2 * k_rg.mean())


def fid_few_points(real: np.ndarray, generated: np.ndarray) -> float:
    """FID in NumPy through N x N matrices, for sets of fewer points than dimensions.

    With A = centred features / sqrt(N - 1), the covariance is AᵀA and the nonzero
    eigenvalues of S_r S_g are the squared singular values of A_r A_gᵀ, so tr sqrt(S_r S_g)
    is their sum: no D x D matrix square root.
    """
    def centred(x: np.ndarray) -> np.ndarray:
        return (x - x.mean(axis=0)) / np.sqrt(len(x) - 1)

    a_real, a_generated = centred(real), centred(generated)
    cross = np.linalg.svd(a_real @ a_generated.T, compute_uv=False).sum()
    mean_gap = np.sum((real.mean(axis=0) - generated.mean(axis=0)) ** 2)
    return float(mean_gap + np.sum(a_real ** 2) + np.sum(a_generated ** 2) - 2 * cross)


def validation_photos(shared_photos: Path) -> list[Path]:
    from hific_tf.storage.images import list_images

    return [*list_images(shared_photos / "val768"), *list_images(shared_photos / "more/val768")]


def finished(run_dir: Path) -> bool:
    """Whether the run's latest checkpoint is at the step its configuration ends at."""
    from hific_tf.configs import TrainingConfig

    config = TrainingConfig.from_json((run_dir / "train_config.json").read_text())
    state = run_dir / "checkpoint"
    return state.is_file() and f"ckpt-{config.run.num_steps}\"" in state.read_text()


def measure_run(run_dir: Path | None, photos: list[Path], measures, cache: Path) -> dict:
    """Per-photo metrics and patch features of one run (None: the originals' features)."""
    if cache.is_file():
        stored = np.load(cache)
        return {key: stored[key] for key in stored.files}
    from hific_tf.codec import load_codec
    from hific_tf.evaluation import metrics
    from hific_tf.evaluation.report import model_entry
    from hific_tf.storage.images import read_image

    entry = model_entry(run_dir.name, load_codec(run_dir)) if run_dir else None
    columns = {name: [] for name in PER_PHOTO}
    features = []
    started = time.monotonic()
    for index, path in enumerate(photos, start=1):
        image = read_image(path)
        if entry is None:
            features.append(measures.features(metrics.fid256_patches(image)))
            continue
        coded = entry.code(image)
        reconstruction = coded.reconstruction
        columns["bpp"].append(8 * coded.num_bytes / (image.shape[0] * image.shape[1]))
        columns["psnr"].append(float(metrics.psnr(image, reconstruction)))
        columns["ms_ssim"].append(float(metrics.ms_ssim(image, reconstruction)))
        columns["lpips"].append(measures.lpips(image, reconstruction))
        columns["niqe"].append(measures.niqe(reconstruction))
        features.append(measures.features(metrics.fid256_patches(reconstruction)))
        elapsed = time.monotonic() - started
        print(f"  {run_dir.name}: photo {index}/{len(photos)}  {columns['bpp'][-1]:.3f} bpp  "
              f"{elapsed / index * (len(photos) - index):.0f}s left", flush=True)
    result = {"features": np.stack(features).astype(np.float64)}
    if entry is not None:
        result.update({name: np.array(values) for name, values in columns.items()})
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **result)
    return result


def differences(runs: dict, real: np.ndarray, photo_sample: np.ndarray,
                seed_sample: list[int]) -> dict[str, float]:
    """GAN minus control for every metric, over the sampled photos and seeds."""
    result = {name: [] for name in (*PER_PHOTO, *SET_METRICS)}
    gan_bpp, control_bpp = [], []
    real_patches = real[photo_sample].reshape(-1, real.shape[-1])
    for seed in seed_sample:
        gan, control = runs[("gan", seed)], runs[("control", seed)]
        for name in PER_PHOTO[1:]:
            result[name].append(gan[name][photo_sample].mean()
                                - control[name][photo_sample].mean())
        gan_bpp.append(gan["bpp"][photo_sample].mean())
        control_bpp.append(control["bpp"][photo_sample].mean())
        for name, function in (("fid", fid_few_points), ("kid", kid_one_block)):
            scores = [function(real_patches,
                               run["features"][photo_sample].reshape(-1, real.shape[-1]))
                      for run in (gan, control)]
            result[name].append(scores[0] - scores[1])
    result["bpp"] = [np.mean(gan_bpp) / np.mean(control_bpp) - 1.0]
    return {name: float(np.mean(values)) for name, values in result.items()}


def bootstrap(runs: dict, real: np.ndarray, seeds: list[int], resamples: int,
              resample_seeds: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    photos = real.shape[0]
    draws = {name: [] for name in (*PER_PHOTO, *SET_METRICS)}
    for _ in range(resamples):
        photo_sample = rng.integers(0, photos, photos)
        seed_sample = list(rng.choice(seeds, len(seeds))) if resample_seeds else seeds
        for name, value in differences(runs, real, photo_sample, seed_sample).items():
            draws[name].append(value)
    return {name: np.array(values) for name, values in draws.items()}


def summarise(point: dict[str, float], draws: dict[str, np.ndarray]) -> dict[str, dict]:
    return {name: {"difference": point[name],
                   "low": float(np.percentile(draws[name], 2.5)),
                   "high": float(np.percentile(draws[name], 97.5))}
            for name in point}


def plot(intervals: dict, seeds: list[int], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*PER_PHOTO, *SET_METRICS]
    figure, grid = plt.subplots(2, 4, figsize=(13, 6))
    axes = list(grid.flat)
    axes[-1].axis("off")
    labels = [f"seed {seed}" for seed in seeds] + ["pooled"]
    for axis, name in zip(axes, names, strict=False):
        rows = [intervals["per_seed"][str(seed)][name] for seed in seeds]
        rows.append(intervals["pooled"][name])
        for y, row in enumerate(rows):
            colour = "black" if y == len(rows) - 1 else "tab:blue"
            axis.errorbar(row["difference"], y, xerr=[[row["difference"] - row["low"]],
                                                      [row["high"] - row["difference"]]],
                          fmt="o", color=colour, capsize=3)
        axis.axvline(0, color="grey", linewidth=0.8)
        axis.set_yticks(range(len(rows)), labels)
        better = "lower" if LOWER_IS_BETTER[name] else "higher"
        title = "bpp (GAN / control − 1)" if name == "bpp" else f"{name.upper()} ({better} better)"
        axis.set_title(title, fontsize=9)
        axis.invert_yaxis()
    figure.suptitle("GAN minus control on the 20 validation photos, 95 % bootstrap intervals",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(output, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="train.sh's run folder")
    parser.add_argument("--photos", type=Path, required=True,
                        help="the shared photos folder (holding val768 and more/val768)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--resamples", type=int, default=2000)
    arguments = parser.parse_args()
    photos = validation_photos(arguments.photos)
    if len(photos) != 20:
        print(f"expected the 20 validation photos under {arguments.photos}, found "
              f"{len(photos)}", file=sys.stderr)
        return 2
    run_dirs = sorted(d for d in arguments.runs.iterdir() if RUN_NAME.match(d.name))
    seeds = sorted({int(RUN_NAME.match(d.name)[2]) for d in run_dirs})
    if not seeds or len(run_dirs) != 2 * len(seeds):
        print(f"{arguments.runs} needs gan-seedN and control-seedN for each seed",
              file=sys.stderr)
        return 2
    unfinished = [d.name for d in run_dirs if not finished(d)]
    if unfinished:
        print(f"not trained to the end yet: {', '.join(unfinished)} (rerun train.sh)",
              file=sys.stderr)
        return 2

    from hific_tf.evaluation.report import load_measures

    measures = load_measures()
    if measures.skipped:
        print(f"the perceptual networks are missing: {measures.skipped}", file=sys.stderr)
        return 2
    cache = arguments.runs / "measurements"
    real = measure_run(None, photos, measures, cache / "originals.npz")["features"]
    runs = {}
    for run_dir in run_dirs:
        kind, seed = RUN_NAME.match(run_dir.name).groups()
        runs[(kind, int(seed))] = measure_run(run_dir, photos, measures,
                                              cache / f"{run_dir.name}.npz")

    flat_real = real.reshape(-1, real.shape[-1])

    rng = np.random.default_rng(0)
    all_photos = np.arange(len(photos))
    intervals = {"per_seed": {}, "pooled": None}
    for seed in seeds:
        point = differences(runs, real, all_photos, [seed])
        draws = bootstrap(runs, real, [seed], arguments.resamples, False, rng)
        intervals["per_seed"][str(seed)] = summarise(point, draws)
    point = differences(runs, real, all_photos, seeds)
    intervals["pooled"] = summarise(point, bootstrap(runs, real, seeds, arguments.resamples,
                                                     True, rng))
    pooled = intervals["pooled"]
    claim = {"niqe_lower": pooled["niqe"]["high"] < 0, "kid_lower": pooled["kid"]["high"] < 0,
             "rate_at_most_5_percent_higher": pooled["bpp"]["difference"] <= 0.05}
    claim["holds"] = all(claim.values())

    arguments.output.mkdir(parents=True, exist_ok=True)
    with (arguments.output / "per_photo.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["run", "kind", "seed", "photo", *PER_PHOTO])
        for (kind, seed), run in sorted(runs.items()):
            for index, path in enumerate(photos):
                writer.writerow([f"{kind}-seed{seed}", kind, seed, path.name,
                                 *(f"{run[name][index]:.6g}" for name in PER_PHOTO)])
    with (arguments.output / "set_metrics.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["run", "kind", "seed", "patches", "fid", "kid", *PER_PHOTO])
        for (kind, seed), run in sorted(runs.items()):
            generated = run["features"].reshape(-1, real.shape[-1])
            writer.writerow([f"{kind}-seed{seed}", kind, seed, len(generated),
                             f"{fid_few_points(flat_real, generated):.4f}",
                             f"{kid_one_block(flat_real, generated):.6f}",
                             *(f"{run[name].mean():.6g}" for name in PER_PHOTO)])
    document = {
        "experiment": "paper_claim_small",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "photos": [path.name for path in photos],
        "seeds": seeds,
        "patches_per_photo": int(real.shape[1]),
        "resamples": arguments.resamples,
        "method": ("percentile bootstrap; per seed: photos resampled with replacement, paired; "
                   "pooled: seeds and photos resampled independently with replacement, the "
                   "difference averaged over the drawn seeds; FID and KID recomputed over the "
                   "FID/256 patches of the drawn photos; bpp as GAN mean / control mean - 1"),
        "claim": claim,
        **intervals,
    }
    (arguments.output / "intervals.json").write_text(json.dumps(document, indent=1) + "\n")
    plot(intervals, seeds, arguments.output / "intervals.png")
    print(f"{'metric':<8} {'GAN - control':>14}  95 % interval (pooled over {len(seeds)} seeds)")
    for name, row in pooled.items():
        print(f"{name:<8} {row['difference']:>14.5f}  [{row['low']:.5f}, {row['high']:.5f}]")
    print(f"the paper's claim {'holds' if claim['holds'] else 'does not hold'} here: {claim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
