"""Seconds per step and peak memory of the full-size hific-lo training step on this CPU.

The paper's recipe (batch 8 per half: D on 8 crops, then E/G/P on 8 others, 256x256 crops)
on the real training photos, with k_P = 0 so that it needs no LPIPS weights (LPIPS-AlexNet
adds little next to G). Writes benchmarks/results/train_step.{json,png}.

    python benchmarks/train_step.py --data=SHARED_DATA [--steps=3] [--batch_size=8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine, peak_rss_mib

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the shared data set's folder (with photos/train)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args()
    if not (args.data / "photos" / "train").is_dir():
        print(f"skipped: {args.data}/photos/train not found (pass --data=PATH)")
        return
    from hific_tf.configs import training_preset
    from hific_tf.data import training_dataset
    from hific_tf.training import Trainer

    config = training_preset("hific-lo").replace(k_p=0.0, batch_size=args.batch_size,
                                                 num_steps=10**6)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(config, run_dir)
        dataset = training_dataset([str(args.data / "photos" / "train")],
                                   trainer.images_per_step(), config.recipe.crop_size,
                                   cache_decoded=True)
        iterator = iter(trainer.strategy.experimental_distribute_dataset(dataset))
        started = time.perf_counter()
        trainer.train_step(iterator)  # tracing and the first step
        first = time.perf_counter() - started
        seconds = []
        for step in range(args.steps):
            started = time.perf_counter()
            metrics = trainer.train_step(iterator)
            float(metrics["loss_egp"])
            seconds.append(time.perf_counter() - started)
            print(f"step {step + 1}/{args.steps}: {seconds[-1]:.1f} s", flush=True)
    report = {
        "benchmark": "train_step", "preset": "hific-lo (k_p = 0)",
        "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "batch_size_per_half": args.batch_size, "crop_size": config.recipe.crop_size,
        "first_step_with_tracing_seconds": first, "step_seconds": seconds,
        "mean_step_seconds": sum(seconds) / len(seconds), "peak_rss_mib": peak_rss_mib()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_step.json").write_text(json.dumps(report, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar([f"step {i + 1}" for i in range(len(seconds))], seconds, color="tab:blue")
    axis.set_ylabel("seconds")
    axis.set_title(f"hific-lo training step, batch {args.batch_size}+{args.batch_size}, "
                   f"{config.recipe.crop_size}² crops, CPU\npeak memory "
                   f"{report['peak_rss_mib'] / 1024:.1f} GiB", fontsize=9)
    figure.tight_layout()
    figure.savefig(RESULTS / "train_step.png", dpi=100)
    print(f"mean {report['mean_step_seconds']:.1f} s/step, peak "
          f"{report['peak_rss_mib'] / 1024:.1f} GiB; wrote {RESULTS / 'train_step.json'}")


if __name__ == "__main__":
    main()
