"""Files of the full-size model (random weights) decode identically across configurations.

A few validation photos are coded by the full-size HiFiC with seeded random weights (a
checkpoint directory, whose coding tables are fixed at first use) in one process and decoded
in others that differ in TF_ENABLE_ONEDNN_OPTS, intra-op threads and library against CLI,
both ways, with tests/portability_worker.py, as tests/test_portability.py does for the bundled
model on all 20 photos. Random weights make no claim about quality, only about portability.

    python benchmarks/portability_full_size.py --data=../shared/data [--photos=3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import machine

REPO = Path(__file__).resolve().parent.parent


def environment(onednn: bool) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0"}


def run(command: list[str], onednn: bool) -> float:
    began = time.perf_counter()
    result = subprocess.run(command, env=environment(onednn), capture_output=True, text=True,
                            cwd=REPO)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - began


def worker(work: Path, name: str, onednn: bool, threads: int, **steps) -> float:
    job = work / f"{name}.json"
    job.write_text(json.dumps({"model": str(work / "model"), "threads": threads,
                               **{k: [[str(s), str(t)] for s, t in v]
                                  for k, v in steps.items()}}))
    return run([sys.executable, str(REPO / "tests" / "portability_worker.py"), str(job)],
               onednn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="the shared data set (its photos/val768)")
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--work", default="/tmp/hific-portability")
    parser.add_argument("--output", default="benchmarks/results/portability_full_size.json")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "photos").mkdir(parents=True)
    for photo in sorted((args.data / "photos" / "val768").glob("*.png"))[:args.photos]:
        shutil.copy(photo, work / "photos" / photo.name)
    import tensorflow as tf

    from hific_tf.coding.model import HiFiC
    from hific_tf.configs import model_preset
    from hific_tf.storage.checkpoints import save_model
    from hific_tf.storage.images import read_image

    tf.keras.utils.set_random_seed(0)
    save_model(HiFiC(model_preset("hific")).build_weights(), work / "model")
    seconds = {
        "a (library, oneDNN off, 1 thread)": worker(
            work, "a", False, 1, encode=[(work / "photos", work / "a")],
            decode=[(work / "a", work / "a_from_a")]),
        "cli (oneDNN on)": run([sys.executable, "-m", "hific_tf.cli.main", "compress",
                                f"--model={work / 'model'}", str(work / "photos"),
                                f"--output={work / 'cli'}"], True),
        "c (library, oneDNN on, 2 threads)": worker(
            work, "c", True, 2, decode=[(work / s, work / f"c_from_{s}")
                                        for s in ("a", "cli")]),
        "a2 (library, oneDNN off, 1 thread)": worker(
            work, "a2", False, 1, decode=[(work / "cli", work / "a_from_cli")]),
    }
    rows = []
    for source in ("a", "cli"):
        for path in sorted((work / source).glob("*.hfc")):
            latents = [np.load(work / f"{d}_from_{source}" / f"{path.stem}.y_hat.npy")
                       for d in ("a", "c")]
            images = [read_image(work / f"{d}_from_{source}" / f"{path.stem}.png")
                      for d in ("a", "c")]
            rows.append({"file": f"{source}/{path.name}", "bytes": path.stat().st_size,
                         "y_hat_identical": bool(np.array_equal(*latents)),
                         "max_grey_level_difference": int(np.max(np.abs(
                             images[0].astype(int) - images[1].astype(int))))})
    same_files = sum((work / "a" / p.name).read_bytes() == p.read_bytes()
                     for p in (work / "cli").glob("*.hfc"))
    result = {"benchmark": "portability_full_size", "date": time.strftime("%Y-%m-%d"),
              "model": "hific (full size, seeded random weights)", "machine": machine(),
              "files": rows, "all_decoded_identically": all(
                  r["y_hat_identical"] and r["max_grey_level_difference"] <= 1 for r in rows),
              "encoder_outputs_byte_identical": f"{same_files} of {len(rows) // 2}",
              "seconds": seconds}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
