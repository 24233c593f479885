r"""Does stage 2 (the GAN) lower NIQE on val768? Every retained checkpoint of the given runs.

For each run directory (a stage-1 run, or a bundled stage-1 model by name, as the
reference; stage-2 runs to compare with it), restores every checkpoint still on disk, codes
each val768 photo with the rounded latents (bpp is the model's estimate, as in training
validation) and records PSNR and NIQE per photo. Writes per_checkpoint.csv (one row per run,
step and photo), summary.json (means and, for stage-2 checkpoints, on how many photos NIQE
is below the reference's; also each run's validation history, the NIQE that training
recorded every few hundred steps) and niqe.png to experiments/results/gan_niqe/ (or
--output), with the machine. Each stage-1 run starts its own series: stage-2 runs are
compared only with the stage-1 run they were initialised from. `--input` is the folder of
the five val768 photos (the shared data set's photos/val768) in every command below.

    R=~/runs; .venv/bin/python experiments/gan_niqe.py --reference=$R/small-mselpips \
        --runs=$R/small-hific,$R/abl-beta0.05,$R/abl-beta0.015,$R/s2-b03-t125,$R/s2-b05-lr3e5,$R/s2-d2-b03,$R/s2-d2-b05
    .venv/bin/python experiments/gan_niqe.py --reference=$R/stage1-9750 \
        --runs=$R/s2-final,$R/s2-b015,$R/s2-b0-control \
        --output=experiments/results/gan_niqe_stage1_9750
    .venv/bin/python experiments/gan_niqe.py --reference=mselpips-small \
        --runs=$R/s2-256,$R/s2-256-b0,$R/s2-256-b0.15 \
        --output=experiments/results/gan_niqe_crop256
    .venv/bin/python experiments/gan_niqe.py --reference=mselpips-small \
        --runs=$R/s2-256-rl-b0,$R/s2-256-rl-b0.15 \
        --output=experiments/results/gan_niqe_random_lpips
    .venv/bin/python experiments/gan_niqe.py --reference=mselpips-small \
        --runs=$R/s2-256-ds-b0.03,$R/s2-256-ds-b0.15,$R/s2-256-ds-d2-b0.03,$R/s2-256-ds-d2-b0.08 \
        --output=experiments/results/gan_niqe_dshift
    # The shipped pair against stage 1 alone (its weights, as shipped before 2026-12-01,
    # saved as stage1-5000.npz in a folder of their own):
    HIFIC_TF_WEIGHTS_DIR=OLD_WEIGHTS .venv/bin/python experiments/gan_niqe.py \
        --reference=stage1-5000 --runs=$R/small-mselpips-256,$R/small-hific \
        --output=experiments/results/gan_niqe_bundled
    # and the same pair trained again with --seed=1 (run directories seed1-small-*):
    HIFIC_TF_WEIGHTS_DIR=OLD_WEIGHTS .venv/bin/python experiments/gan_niqe.py \
        --reference=stage1-5000 --runs=$R/seed1-small-mselpips-256,$R/seed1-small-hific \
        --output=experiments/results/gan_niqe_bundled_seed1
    # and with --seed=2 (seed2-small-*; then experiments/gan_niqe_seeds.py puts the three
    # seeds side by side):
    HIFIC_TF_WEIGHTS_DIR=OLD_WEIGHTS .venv/bin/python experiments/gan_niqe.py \
        --reference=stage1-5000 --runs=$R/seed2-small-mselpips-256,$R/seed2-small-hific \
        --output=experiments/results/gan_niqe_bundled_seed2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# What the results ran on: benchmarks/machine.py, shared with the benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from machine import machine

RESULTS = Path(__file__).parent / "results" / "gan_niqe"


def model_rows(model, label: dict, photos: dict[str, np.ndarray]) -> list[dict]:
    """Per-photo bpp, PSNR and NIQE of `model`, each row starting with `label`."""
    from hific_tf.evaluation.metrics import psnr
    from hific_tf.evaluation.perceptual.niqe import niqe

    rows = []
    for name, photo in photos.items():
        bits, decoded = model.reconstruct_photo(photo)
        decoded = decoded.numpy()
        rows.append({**label, "photo": name,
                     "bpp": float(bits) / (photo.shape[0] * photo.shape[1]),
                     "psnr": float(psnr(photo, decoded)), "niqe": niqe(decoded)})
    print(f"{label['run']} step {label['step']}: NIQE "
          f"{np.mean([r['niqe'] for r in rows]):.2f}", flush=True)
    return rows


def checkpoint_rows(run: Path, photos: dict[str, np.ndarray]) -> list[dict]:
    """Per-photo rows of every checkpoint kept in `run`."""
    import tensorflow as tf

    from hific_tf.coding.model import HiFiC
    from hific_tf.storage.checkpoints import read_config

    training = json.loads((run / "train_config.json").read_text())
    model = HiFiC(read_config(run)).build_weights()
    rows = []
    for prefix in tf.train.get_checkpoint_state(str(run)).all_model_checkpoint_paths:
        tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
        label = {"run": run.name, "stage": training["stage"], "beta": training["beta"],
                 "step": int(prefix.rsplit("-", 1)[1])}
        rows += model_rows(model, label, photos)
    return rows


def reference_rows(reference: str, photos: dict[str, np.ndarray]) -> list[dict]:
    """Rows of the stage-1 reference: a run directory, or a bundled model's name (its
    shipped weights, as step 0)."""
    if Path(reference).expanduser().is_dir():
        return checkpoint_rows(Path(reference).expanduser(), photos)
    from hific_tf.storage import zoo
    model = zoo.load_weights(zoo.bundled_folder() / f"{reference}{zoo.SUFFIX}")
    label = {"run": reference, "stage": "mselpips", "beta": 0.0, "step": 0}
    return model_rows(model, label, photos)


def summarise(rows: list[dict], reference: str) -> list[dict]:
    """Means per checkpoint; stage-2 rows also count the photos where NIQE beats the
    reference run's last checkpoint."""
    last = max(r["step"] for r in rows if r["run"] == reference)
    reference_niqe = {r["photo"]: r["niqe"] for r in rows
                      if r["run"] == reference and r["step"] == last}
    summary = []
    for run, step in sorted({(r["run"], r["step"]) for r in rows}):
        group = [r for r in rows if r["run"] == run and r["step"] == step]
        entry = {"run": run, "beta": group[0]["beta"], "step": step,
                 **{key: float(np.mean([r[key] for r in group]))
                    for key in ("bpp", "psnr", "niqe")}}
        if run != reference:
            entry["photos_below_reference"] = sum(
                r["niqe"] < reference_niqe[r["photo"]] for r in group)
        summary.append(entry)
    return summary


def validation_history(run: Path) -> list[dict]:
    """The validation records of `run` that include NIQE (recorded during training)."""
    path = run / "validation.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [record for record in records if "niqe" in record]


def plot(summary: list[dict], histories: dict[str, list[dict]], reference: str,
         original_niqe: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for run in sorted({s["run"] for s in summary} - {reference}):
        points = [s for s in summary if s["run"] == run]
        line, = axis.plot([s["step"] for s in points], [s["niqe"] for s in points], "o",
                          label=f"{run} (stage 2, β = {points[0]['beta']:g})")
        history = histories.get(run, [])
        if history:
            axis.plot([h["step"] for h in history], [h["niqe"] for h in history], "-",
                      color=line.get_color(), alpha=0.6)
    reference_niqe = [s for s in summary if s["run"] == reference][-1]["niqe"]
    axis.axhline(reference_niqe, color="black", linestyle="--",
                 label=f"{reference} (no GAN) {reference_niqe:.2f}")
    axis.axhline(original_niqe, color="grey", linestyle=":",
                 label=f"the original photos {original_niqe:.2f}")
    axis.set_xlabel("stage-2 step")
    axis.set_ylabel("mean NIQE on val768 (lower is better)")
    axis.set_title("Stage 2 against stage 1 on val768\n"
                   "(dots: retained checkpoints; lines: validation during training)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True,
                        help="the stage-1 run directory, or a bundled model's name")
    parser.add_argument("--runs", required=True, help="stage-2 run directories, commas")
    parser.add_argument("--input", required=True, help="folder of photos, e.g. val768")
    parser.add_argument("--output", default=str(RESULTS), help="folder for the results")
    arguments = parser.parse_args()
    if not Path(arguments.input).is_dir():
        print(f"skipped: {arguments.input} is not there (the project's photos)")
        return 0
    from hific_tf.evaluation.perceptual.niqe import niqe
    from hific_tf.evaluation.report import write_csv
    from hific_tf.storage.images import list_images, read_image

    photos = {Path(path).name: read_image(path) for path in list_images(arguments.input)}
    runs = [Path(run).expanduser() for run in arguments.runs.split(",")]
    rows = reference_rows(arguments.reference, photos)
    rows += [row for run in runs for row in checkpoint_rows(run, photos)]
    reference = rows[0]["run"]
    summary = summarise(rows, reference)
    histories = {run.name: validation_history(run) for run in runs}
    original_niqe = float(np.mean([niqe(photo) for photo in photos.values()]))
    output = Path(arguments.output)
    output.mkdir(parents=True, exist_ok=True)
    write_csv(rows, output / "per_checkpoint.csv")
    (output / "summary.json").write_text(json.dumps(
        {"machine": machine(), "input": arguments.input, "original_niqe": original_niqe,
         "checkpoints": summary, "validation_history": histories}, indent=2) + "\n")
    plot(summary, histories, reference, original_niqe, output / "niqe.png")
    print(f"results in {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
