"""Training steps per second and peak memory on this CPU, for each option of the step.

Cases, each in a process of its own (so that its peak memory is its own):
- the bundled small presets (stage 1 `small-mselpips`, stage 2 `small-hific`) as the recipe
  runs them: 128 x 128 crops from the 70 training photos, the real LPIPS (k_P = 1);
- each with the replica step compiled by XLA (`jit_compile=True`);
- each on one cached batch, repeated, instead of the data pipeline (the pipeline's share);
- stage 1 at 256 x 256 crops (the crop size the recipe could have chosen);
- the full-size hific-lo step (the paper's batch: D on 8 crops, then E/G/P on 8 others,
  256 x 256, k_P = 0 so that it needs no LPIPS weights).
Then whether XLA trains the same: stage 1 from the bundled stage-1 weights for
--curve_steps steps with and without XLA, on the same data order, loss compared over windows.
Writes benchmarks/results/train_step.{json,png}.

    python benchmarks/train_step.py --data=SHARED_DATA [--steps=30] [--curve_steps=300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine, peak_rss_mib

RESULTS = Path(__file__).resolve().parent / "results"
# name: (preset, crop size, jit_compile, cached batch, timed steps or None for --steps)
CASES = {
    "stage 1": ("small-mselpips", 128, False, False, None),
    "stage 1, XLA": ("small-mselpips", 128, True, False, None),
    "stage 1, cached batch": ("small-mselpips", 128, False, True, None),
    "stage 1, 256 crops": ("small-mselpips", 256, False, False, None),
    "stage 2": ("small-hific", 128, False, False, None),
    "stage 2, XLA": ("small-hific", 128, True, False, None),
    "stage 2, cached batch": ("small-hific", 128, False, True, None),
    "hific-lo full size": ("hific-lo", 256, False, False, 3),
}
WINDOW = 50  # steps per window of the loss-curve comparison


def recipe_cases() -> tuple[str, str]:
    """The cases that experiments/bundled_training/train.sh runs: its presets' defaults."""
    from hific_tf.configs import training_preset

    return tuple(f"stage {stage}{', XLA' if training_preset(preset).run.jit_compile else ''}"
                 for stage, preset in ((1, "small-mselpips"), (2, "small-hific")))


def training_folders(data: Path) -> list[str]:
    photos = data / "photos"
    return [str(folder) for folder in (photos / "train", photos / "more" / "train")
            if folder.is_dir()]


def make_trainer(preset: str, crop_size: int, jit_compile: bool, run_dir: str, data: Path):
    """A Trainer of `preset` (from the bundled stage-1 weights for the small presets) and
    an iterator over its training batches."""
    from hific_tf.configs import training_preset
    from hific_tf.storage import zoo
    from hific_tf.training.data import training_dataset
    from hific_tf.training.loop import Trainer

    config = training_preset(preset).replace(crop_size=crop_size, jit_compile=jit_compile,
                                             num_steps=10**6)
    perceptual = None
    if preset.startswith("small"):
        from hific_tf.evaluation.perceptual.lpips import load_lpips, perceptual_loss

        perceptual = perceptual_loss(load_lpips())
    else:
        config = config.replace(k_p=0.0, batch_size=8)
    trainer = Trainer(config, run_dir, perceptual_loss=perceptual)
    if preset.startswith("small"):
        trainer.restore_or_initialize(init_model=zoo.load_bundled("mselpips-small"),
                                      with_z_prior=True)
    else:
        trainer.restore_or_initialize()
    recipe = config.recipe
    dataset = training_dataset(training_folders(data), trainer.images_per_step(),
                               recipe.crop_size, seed=recipe.seed, cache_decoded=True,
                               short_side=recipe.data_short_side)
    return trainer, dataset


def time_case(name: str, data: Path, steps: int) -> dict:
    """Runs one case in this process: first step (with tracing), then timed steps."""
    import tensorflow as tf

    preset, crop_size, jit_compile, cached, case_steps = CASES[name]
    steps = case_steps or steps
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, dataset = make_trainer(preset, crop_size, jit_compile, run_dir, data)
        if cached:
            dataset = tf.data.Dataset.from_tensors(next(iter(dataset))).repeat()
        iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
        started = time.perf_counter()
        float(trainer.train_step(iterator)["loss_egp"])  # tracing and the first step
        first = time.perf_counter() - started
        float(trainer.train_step(iterator)["loss_egp"])  # XLA may retrace once more
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            float(trainer.train_step(iterator)["loss_egp"])
            seconds.append(time.perf_counter() - started)
    mean = sum(seconds) / len(seconds)
    spread = (sum((s - mean) ** 2 for s in seconds) / max(len(seconds) - 1, 1)) ** 0.5
    return {"case": name, "preset": preset, "crop_size": crop_size,
            "jit_compile": jit_compile, "cached_batch": cached, "timed_steps": steps,
            "first_step_with_tracing_seconds": first, "mean_step_seconds": mean,
            "step_seconds_std": spread, "steps_per_second": 1 / mean,
            "peak_rss_mib": peak_rss_mib()}


def loss_curve(jit_compile: bool, data: Path, steps: int) -> dict:
    """Stage 1's per-step loss over `steps` steps from the bundled stage-1 weights."""
    with tempfile.TemporaryDirectory() as run_dir:
        trainer, dataset = make_trainer("small-mselpips", 128, jit_compile, run_dir, data)
        iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
        losses = [float(trainer.train_step(iterator)["loss_egp"]) for _ in range(steps)]
    return {"jit_compile": jit_compile, "loss_egp": losses}


def in_child(*arguments: str) -> dict:
    """This script run with `arguments` in a new process; its last stdout line as JSON."""
    result = subprocess.run([sys.executable, __file__, *arguments], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare_curves(plain: list[float], compiled: list[float]) -> dict:
    """Window means of both curves and of their step-by-step differences (the same batches
    in the same order, so each step's loss is paired), judged against the noise: twice the
    standard error of the window's mean difference."""
    import numpy as np

    rows = []
    for start in range(0, min(len(plain), len(compiled)) - WINDOW + 1, WINDOW):
        a = np.array(plain[start:start + WINDOW])
        b = np.array(compiled[start:start + WINDOW])
        noise = 2 * (b - a).std(ddof=1) / np.sqrt(WINDOW)
        rows.append({"steps": f"{start + 1}-{start + WINDOW}", "plain": float(a.mean()),
                     "xla": float(b.mean()), "difference": float((b - a).mean()),
                     "two_standard_errors": float(noise)})
    return {"window_steps": WINDOW, "windows": rows,
            "within_noise": all(abs(r["difference"]) <= r["two_standard_errors"]
                                for r in rows)}


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    small = [case for case in report["cases"] if case["preset"].startswith("small")]
    figure, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.2))
    rates = [case["steps_per_second"] for case in small]
    colours = ["tab:green" if case["case"] in report["recipe_uses"] else "tab:gray"
               for case in small]
    bars.barh([case["case"] for case in small], rates, color=colours)
    for index, case in enumerate(small):
        bars.text(rates[index], index, f" {rates[index]:.2f}/s, "
                  f"{case['peak_rss_mib'] / 1024:.1f} GiB", va="center", fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("training steps per second (green: what the recipe runs)")
    bars.set_xlim(0, max(rates) * 1.6)
    title = f"{report['machine']['cpu']}, {report['machine']['cores']} cores"
    for case in report["cases"]:
        if case["preset"] == "hific-lo":
            title += f"; full-size hific-lo: {case['mean_step_seconds']:.0f} s/step"
    bars.set_title(title, fontsize=9)
    for curve, colour in ((report["loss_curves"]["plain"], "tab:blue"),
                          (report["loss_curves"]["xla"], "tab:orange")):
        losses = curve["loss_egp"]
        smooth = [sum(losses[max(0, i - 19):i + 1]) / len(losses[max(0, i - 19):i + 1])
                  for i in range(len(losses))]
        label = "XLA" if curve["jit_compile"] else "plain"
        curves.plot(range(1, len(losses) + 1), losses, color=colour, alpha=0.25, lw=0.8)
        curves.plot(range(1, len(losses) + 1), smooth, color=colour, label=f"{label} "
                    "(20-step mean)")
    verdict = report["loss_curves"]["comparison"]["within_noise"]
    curves.set_title("stage 1 from the bundled weights, same data order: "
                     f"{'within' if verdict else 'NOT within'} noise", fontsize=9)
    curves.set_xlabel("step")
    curves.set_ylabel("loss_egp")
    curves.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the shared data set's folder (with photos/train)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per small case")
    parser.add_argument("--curve_steps", type=int, default=300)
    parser.add_argument("--cases", default=";".join(CASES),
                        help=f"semicolon-separated subset of: {'; '.join(CASES)}")
    parser.add_argument("--child_case", help=argparse.SUPPRESS)
    parser.add_argument("--child_curve", choices=["plain", "xla"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.data / "photos" / "train").is_dir():
        print(f"skipped: {args.data}/photos/train not found (pass --data=PATH)")
        return
    if args.child_case:
        print(json.dumps(time_case(args.child_case, args.data, args.steps)))
        return
    if args.child_curve:
        print(json.dumps(loss_curve(args.child_curve == "xla", args.data, args.curve_steps)))
        return
    cases = []
    for name in args.cases.split(";"):
        cases.append(in_child("--data", str(args.data), "--steps", str(args.steps),
                              "--child_case", name))
        print(f"{name}: {cases[-1]['steps_per_second']:.3f} steps/s "
              f"({cases[-1]['mean_step_seconds']:.2f} ± {cases[-1]['step_seconds_std']:.2f} s),"
              f" peak {cases[-1]['peak_rss_mib'] / 1024:.1f} GiB", flush=True)
    curves = {kind: in_child("--data", str(args.data), "--curve_steps", str(args.curve_steps),
                             "--child_curve", kind) for kind in ("plain", "xla")}
    curves["comparison"] = compare_curves(curves["plain"]["loss_egp"],
                                          curves["xla"]["loss_egp"])
    report = {"benchmark": "train_step", "date": time.strftime("%Y-%m-%d"),
              "machine": machine(), "cases": cases, "loss_curves": curves,
              "recipe_uses": list(recipe_cases())}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_step.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, RESULTS / "train_step.png")
    print(f"XLA trains {'' if curves['comparison']['within_noise'] else 'NOT '}the same "
          f"within noise; wrote {RESULTS / 'train_step.json'}")


if __name__ == "__main__":
    main()
