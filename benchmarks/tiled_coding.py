"""Peak memory and wall time of tiled coding with the full-size model, up to 8K.

Each (size, operation, budget) runs in its own process, so that its peak resident memory is
its own. The weights are freshly initialised (random, seed 0): the networks' cost does not
depend on their values; the rate, and so the range coder's share of the time, does (random
weights code at about 7 bpp, a trained model near 0.3). The test images are a val photo
resized to each size, written once as PNG files that the compress workers read as the
command line reads an image (hific_tf.storage.images.read_image). Writes
benchmarks/results/tiled_coding.{json,csv,png}.

    python benchmarks/tiled_coding.py [--data=../shared/data] [--model=hific]
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine, peak_rss_mib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"768x512": (512, 768), "2560x1600": (1600, 2560), "16MP": (2988, 5312),
         "8K": (4320, 7680)}
DEFAULT_BUDGET = "2GiB"
# A budget no image here reaches: the untiled networks, for the time comparison.
UNTILED_BUDGET = "1TiB"
# (size, budget) pairs, in the order they run.
RUNS = [("768x512", DEFAULT_BUDGET), ("2560x1600", DEFAULT_BUDGET),
        ("2560x1600", UNTILED_BUDGET), ("16MP", DEFAULT_BUDGET), ("8K", DEFAULT_BUDGET)]
PHOTO = "photos/val/lomiri_Bridge_by_Sander_Klootwijk.jpg"


def test_image(data: Path, size: str) -> np.ndarray:
    """The val photo resized (bicubic) to `size`."""
    from PIL import Image

    from hific_tf.storage.images import read_image

    height, width = SIZES[size]
    photo = Image.fromarray(read_image(data / PHOTO))
    return np.asarray(photo.resize((width, height), Image.BICUBIC))


def worker(operation: str, size: str, budget: str, model_name: str, image_path: Path,
           coded: Path) -> dict:
    """Runs one operation once in this process and reports its costs; compress reads the
    test image from `image_path` as the command line does."""
    import tensorflow as tf

    from hific_tf.cli.common import parse_memory_size
    from hific_tf.coding.model import HiFiC
    from hific_tf.configs import model_preset
    from hific_tf.storage.images import read_image

    tf.keras.utils.set_random_seed(0)
    image = read_image(image_path) if operation == "compress" else None
    model = HiFiC(model_preset(model_name)).prepare_for_coding()
    model.set_memory_budget(parse_memory_size(budget))
    # Trace both functions on a small image so that tracing is not timed.
    model.decompress(model.compress(np.zeros((64, 64, 3), np.uint8)))
    rows, columns = -(-SIZES[size][0] // 16), -(-SIZES[size][1] // 16)
    rows, columns = tf.constant(rows), tf.constant(columns)
    sides = {"encoder": [int(side) for side in model.tiler.encoder_tile(rows, columns)],
             "generator": [int(side) for side in model.tiler.generator_tile(rows, columns)],
             "hyper_synthesis_z_rows": int(model.tiler.hyper_rows(rows, columns))}
    baseline = peak_rss_mib()
    cpu_started = time.process_time()
    started = time.perf_counter()
    if operation == "compress":
        coded.write_bytes(model.compress(image).numpy())
    else:
        decoded = model.decompress(coded.read_bytes()).numpy()
        assert decoded.shape[:2] == SIZES[size]
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    height, width = SIZES[size]
    return {"operation": operation, "size": size, "width": width, "height": height,
            "memory_budget": budget, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "load_average_1min_after": os.getloadavg()[0], "peak_rss_mib": peak_rss_mib(),
            "rss_after_model_and_tracing_mib": baseline, "tile_sides_latents": sides,
            "bytes": coded.stat().st_size, "bpp": 8 * coded.stat().st_size / (height * width)}


def plot(results: list[dict], path: Path) -> None:
    """Time and peak memory per size and operation (the default budget's runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for operation, colour in (("compress", "tab:blue"), ("decompress", "tab:orange")):
        rows = [r for r in results
                if r["operation"] == operation and r["memory_budget"] == DEFAULT_BUDGET]
        megapixels = [r["width"] * r["height"] / 1e6 for r in rows]
        time_axis.plot(megapixels, [r["seconds"] for r in rows], "o-", color=colour,
                       label=operation)
        memory_axis.plot(megapixels, [r["peak_rss_mib"] / 1024 for r in rows], "o-",
                         color=colour, label=operation)
        for r, x in zip(rows, megapixels, strict=True):
            memory_axis.annotate(r["size"], (x, r["peak_rss_mib"] / 1024), fontsize=7,
                                 textcoords="offset points", xytext=(3, 3))
    memory_axis.axhline(2.0, color="grey", linestyle="--", linewidth=1)
    memory_axis.text(0.3, 2.02, "--memory_budget=2GiB", fontsize=7, color="grey")
    time_axis.set_xlabel("megapixels")
    time_axis.set_ylabel("wall time (s)")
    memory_axis.set_xlabel("megapixels")
    memory_axis.set_ylabel("peak resident memory, whole process (GiB)")
    memory_axis.set_ylim(bottom=0)
    time_axis.legend()
    figure.suptitle("hific-tf full-size model (random weights), tiled, CPU float32")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    import argparse

    from hific_tf.storage.images import write_png

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default="hific", help="Model preset (hific: full size).")
    parser.add_argument("--sizes", default=",".join(SIZES), help="Sizes to run.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Output folder.")
    parser.add_argument("--worker", choices=["compress", "decompress"])
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--budget")
    parser.add_argument("--coded", type=Path)
    parser.add_argument("--image", type=Path, help="The test image (workers).")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.budget, args.model, args.image,
                                args.coded)))
        return
    if not (args.data / PHOTO).is_file():
        print(f"skipped: {args.data / PHOTO} not found (pass --data=PATH)")
        return
    wanted = args.sizes.split(",")
    report_path = args.results / "tiled_coding.json"
    # Runs of sizes not asked for this time stay in the report from earlier runs.
    results = []
    if report_path.is_file():
        results = [r for r in json.loads(report_path.read_text())["results"]
                   if r["size"] not in wanted]
    with tempfile.TemporaryDirectory() as scratch:
        for size, budget in RUNS:
            if size not in wanted:
                continue
            coded = Path(scratch) / f"{size}-{budget}.hfc"
            image = Path(scratch) / f"{size}.png"
            if not image.exists():
                write_png(image, test_image(args.data, size))
            for operation in ("compress", "decompress"):
                print(f"{operation} {size} at {budget} ...", flush=True)
                output = subprocess.run(
                    [sys.executable, __file__, f"--worker={operation}", f"--size={size}",
                     f"--budget={budget}", f"--model={args.model}", f"--image={image}",
                     f"--coded={coded}"], check=True, capture_output=True, text=True).stdout
                result = json.loads(output.strip().splitlines()[-1])
                print(f"  {result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU), "
                      f"peak {result['peak_rss_mib']:.0f} MiB, "
                      f"tiles {result['tile_sides_latents']}", flush=True)
                results.append(result)
                write_report(results, args.model, args.results)
    print(f"wrote {args.results}/tiled_coding.json, .csv and .png")


def overheads(results: list[dict], key: str) -> dict:
    """Tiled over untiled `key` at 2560x1600, minus one, per operation that ran both ways."""
    runs = {(r["operation"], r["memory_budget"]): r[key] for r in results
            if r["size"] == "2560x1600"}
    return {operation: runs[operation, DEFAULT_BUDGET] / runs[operation, UNTILED_BUDGET] - 1
            for operation in ("compress", "decompress")
            if (operation, DEFAULT_BUDGET) in runs and (operation, UNTILED_BUDGET) in runs}


def write_report(results: list[dict], model: str, folder: Path) -> None:
    """Writes the JSON, CSV and plot of `results` (after every run, so none is lost)."""
    order = {run: index for index, run in enumerate(RUNS)}
    results.sort(key=lambda r: (order[r["size"], r["memory_budget"]], r["operation"]))
    folder.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "tiled_coding", "model": f"{model} preset, random weights (seed 0)",
              "date": time.strftime("%Y-%m-%d"), "machine": machine(),
              "tiling_time_overhead_2560x1600": overheads(results, "seconds"),
              "tiling_cpu_time_overhead_2560x1600": overheads(results, "cpu_seconds"),
              "results": results}
    (folder / "tiled_coding.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(folder / "tiled_coding.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["operation", "size", "memory_budget", "seconds", "cpu_seconds",
                         "peak_rss_mib", "encoder_tile", "generator_tile", "bpp"])
        for r in results:
            writer.writerow([r["operation"], r["size"], r["memory_budget"],
                             f"{r['seconds']:.2f}", f"{r['cpu_seconds']:.2f}",
                             f"{r['peak_rss_mib']:.0f}", r["tile_sides_latents"]["encoder"],
                             r["tile_sides_latents"]["generator"], f"{r['bpp']:.3f}"])
    plot(results, folder / "tiled_coding.png")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
