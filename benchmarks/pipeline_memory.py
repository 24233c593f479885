"""Peak memory of the training input pipeline on 12-megapixel photos (issue 39).

Writes synthetic 4000 x 3000 JPEGs (smooth shapes and grain, about the size of a camera's)
to a temporary folder and, for each count of --photos of them, each case in a process of
its own (so that its peak resident memory is its own), draws --batches batches of 8 crops
of 256 x 256 from them:
- "before": the pipeline as it was before issue 39, rebuilt here from its description:
  every photo decoded, 256 decoded photos in a shuffle buffer, each crop cut from the whole
  photo rescaled in float32, decoding and cropping with tf.data.AUTOTUNE parallelism;
- "after": hific_tf.training.data.training_dataset as it is, with its defaults;
- "after, data_short_side=1024": the same with each photo first shrunk.
Reports each case's resident memory once the pipeline is built and its peak while the
batches are drawn (VmHWM, reset before drawing: importing TensorFlow alone peaks at about
800 MiB for a moment), and writes benchmarks/results/pipeline_memory.json.

    python benchmarks/pipeline_memory.py [--photos=12,24] [--batches=6]
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
WIDTH, HEIGHT = 4000, 3000
BATCH, CROP = 8, 256
CASES = ("before", "after", "after, data_short_side=1024")


def write_photos(folder: Path, count: int) -> list[Path]:
    """`count` photo-like JPEGs: blurred random shapes with grain, quality 90."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, (HEIGHT // 100, WIDTH // 100, 3), dtype=np.uint8)
        smooth = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC)
        smooth = smooth.filter(ImageFilter.GaussianBlur(8))
        grain = rng.normal(0, 6, (HEIGHT, WIDTH, 1))
        pixels = np.clip(np.asarray(smooth, np.float32) + grain, 0, 255).astype(np.uint8)
        paths.append(folder / f"photo{index:02d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def before_issue_39(folder: str):
    """The pipeline before issue 39: decoded photos shuffled, whole photos rescaled."""
    import tensorflow as tf

    from hific_tf.training.data import _decode, find_sources, rescale_interval

    def crop(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        seeds = tf.random.experimental.stateless_split(seed, 2)
        factor = tf.random.stateless_uniform(
            [], seeds[0], *rescale_interval(tf.reduce_min(shape), CROP))
        size = tf.cast(tf.math.ceil(shape * factor), tf.int32)
        resized = tf.image.resize(tf.cast(image, tf.float32) / 255.0, size)
        return tf.image.stateless_random_crop(resized, [CROP, CROP, 3], seeds[1])

    files, _ = find_sources([folder])
    images = tf.data.Dataset.from_tensor_slices(files).map(tf.io.read_file).map(
        _decode, num_parallel_calls=tf.data.AUTOTUNE)
    images = images.shuffle(256, seed=0, reshuffle_each_iteration=True).repeat()
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    crops = tf.data.Dataset.zip((images, seeds)).map(
        crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return crops.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def status_mib(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Lowers this process's peak resident memory (VmHWM) to its current value: importing
    TensorFlow peaks for a moment higher than a bounded pipeline ever uses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_case(case: str, folder: str, batches: int) -> dict:
    """In this fresh process: builds the case's pipeline and draws `batches` batches."""
    from hific_tf.training.data import training_dataset

    if case == "before":
        dataset = before_issue_39(folder)
    else:
        dataset = training_dataset([folder], BATCH, CROP, seed=0,
                                   short_side=1024 if "short_side" in case else 0)
    built = status_mib("VmRSS")
    process_peak = peak_rss_mib()
    peak_reset = reset_peak()
    started = time.perf_counter()
    for batch in dataset.take(batches):
        assert batch.shape == (BATCH, CROP, CROP, 3)
    return {"case": case, "batches": batches, "seconds": time.perf_counter() - started,
            "resident_when_built_mib": built,
            "peak_while_drawing_mib": status_mib("VmHWM") if peak_reset else None,
            "peak_before_drawing_mib": process_peak,
            "process_peak_rss_mib": peak_rss_mib()}


def in_child(case: str, folder: str, batches: int) -> dict:
    """run_case in a new process; its last stdout line as JSON."""
    result = subprocess.run([sys.executable, __file__, "--child_case", case, "--folder",
                             folder, "--batches", str(batches)], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{case} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="12,24",
                        help="comma-separated numbers of photos to run each case on")
    parser.add_argument("--batches", type=int, default=6, help="batches of 8 per case")
    parser.add_argument("--child_case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_case:
        print(json.dumps(run_case(args.child_case, args.folder, args.batches)))
        return
    counts = [int(count) for count in args.photos.split(",")]
    cases = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_photos(Path(folder), max(counts))
        encoded_mib = sum(path.stat().st_size for path in paths) / len(paths) / 2**20
        for count in counts:
            subset = Path(folder) / f"first{count}"
            subset.mkdir()
            for path in paths[:count]:
                (subset / path.name).symlink_to(path)
            for case in CASES:
                cases.append({"photos": count, **in_child(case, str(subset), args.batches)})
                print(f"{count} photos, {case}: peak {cases[-1]['peak_while_drawing_mib']:.0f}"
                      f" MiB while drawing (resident {cases[-1]['resident_when_built_mib']:.0f}"
                      f" MiB before), {cases[-1]['seconds']:.1f} s", flush=True)
    report = {"benchmark": "pipeline_memory", "date": time.strftime("%Y-%m-%d"),
              "machine": machine(),
              "photo": {"size": f"{WIDTH}x{HEIGHT}", "format": "JPEG",
                        "encoded_mib_mean": round(encoded_mib, 1),
                        "decoded_mib": round(WIDTH * HEIGHT * 3 / 2**20, 1)},
              "batch": BATCH, "crop": CROP, "cases": cases}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS / 'pipeline_memory.json'}")


if __name__ == "__main__":
    main()
