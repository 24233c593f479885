"""Wall time and peak memory of the full-size model's compress and decompress on this CPU.

Each measurement runs in its own process, so that its peak resident memory is its own.
Writes benchmarks/results/codec_speed.{json,png}. The weights are freshly initialised:
the networks' cost does not depend on their values; the rate, and so the range coder's
share of the time, does, a little.

    python benchmarks/codec_speed.py --data=SHARED_DATA [--repeats=2]   # make bench passes it
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine, peak_rss_mib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"768x512": (512, 768), "2560x1600": (1600, 2560)}


def _test_image(data: Path, name: str) -> np.ndarray:
    """A real photo at the requested size: val768 for 768x512, a train crop for larger."""

    from hific_tf.storage.images import list_images, read_image

    height, width = SIZES[name]
    folder = data / "photos" / ("val768" if name == "768x512" else "train")
    for path in list_images(folder):
        image = read_image(path)
        if image.shape[0] >= height and image.shape[1] >= width:
            top = (image.shape[0] - height) // 2
            left = (image.shape[1] - width) // 2
            return np.ascontiguousarray(image[top:top + height, left:left + width])
    raise SystemExit(f"no photo of at least {width}x{height} in {folder}")


def worker(operation: str, size: str, data: Path, coded: Path, repeats: int) -> dict:
    """Runs one operation `repeats` times in this process and reports its costs."""
    import tensorflow as tf

    from hific_tf.coding.model import HiFiC
    from hific_tf.configs import model_preset

    tf.keras.utils.set_random_seed(0)
    image = _test_image(data, size)
    model = HiFiC(model_preset("hific")).prepare_for_coding()
    # Trace both functions on a small image so that tracing is not timed.
    model.decompress(model.compress(image[:64, :64]))
    baseline = peak_rss_mib()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        if operation == "compress":
            result = model.compress(image).numpy()
        else:
            result = model.decompress(coded.read_bytes()).numpy()
        times.append(time.perf_counter() - started)
    if operation == "compress":
        coded.write_bytes(result)
    return {"operation": operation, "size": size, "seconds": times,
            "median_seconds": statistics.median(times),
            "peak_rss_mib": peak_rss_mib(), "rss_after_model_and_tracing_mib": baseline,
            "bytes": coded.stat().st_size,
            "bpp": 8 * coded.stat().st_size / (image.shape[0] * image.shape[1])}


def plot(results: list[dict], path: Path) -> None:
    """Bar charts of time and peak memory per size and operation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [f"{r['operation']}\n{r['size']}" for r in results]
    time_axis.bar(labels, [r["median_seconds"] for r in results], color="tab:blue")
    time_axis.set_ylabel("wall time (s, median)")
    memory_axis.bar(labels, [r["peak_rss_mib"] / 1024 for r in results], color="tab:orange")
    memory_axis.set_ylabel("peak resident memory (GiB)")
    figure.suptitle("hific-tf full-size model (181.5 M parameters), CPU, float32")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the shared data set's folder (with photos/)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", choices=["compress", "decompress"])
    parser.add_argument("--size", choices=list(SIZES))
    parser.add_argument("--coded", type=Path)
    args = parser.parse_args()
    if args.worker:
        result = worker(args.worker, args.size, args.data, args.coded, args.repeats)
        print(json.dumps(result))
        return
    if not (args.data / "photos").is_dir():
        print(f"skipped: {args.data}/photos not found (pass --data=PATH)")
        return
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in SIZES:
            coded = Path(scratch) / f"{size}.hfc"
            for operation in ("compress", "decompress"):
                print(f"{operation} {size} ...", flush=True)
                output = subprocess.run(
                    [sys.executable, __file__, f"--worker={operation}", f"--size={size}",
                     f"--data={args.data}", f"--coded={coded}", f"--repeats={args.repeats}"],
                    check=True, capture_output=True, text=True).stdout
                result = json.loads(output.strip().splitlines()[-1])
                print(f"  {result['median_seconds']:.2f} s, peak {result['peak_rss_mib']:.0f} "
                      f"MiB", flush=True)
                results.append(result)
    RESULTS.mkdir(exist_ok=True)
    report = {"benchmark": "codec_speed", "model": "hific (full size, random weights)",
              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "results": results}
    (RESULTS / "codec_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, RESULTS / "codec_speed.png")
    print(f"wrote {RESULTS / 'codec_speed.json'} and codec_speed.png")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
