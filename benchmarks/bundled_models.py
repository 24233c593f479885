"""The bundled models on val768 against JPEG, WebP and AVIF: the README's table and plots.

Runs `hific-tf demo` (both bundled models, the classic codecs at hific-small's mean bpp and
twice it; bpp, PSNR, MS-SSIM, NIQE, LPIPS, FID/256 and KID/256) into a scratch folder, then
keeps the summary, the
per-image table, the rate-distortion plots and the side-by-side figure in
benchmarks/results/bundled_val768/, with the machine and the demo's wall time.

    .venv/bin/python benchmarks/bundled_models.py --input=VAL768_FOLDER   # make bench passes it
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

RESULTS = Path(__file__).parent / "results" / "bundled_val768"
KEPT = ("summary.json", "per_image.csv", "rd_psnr.png", "rd_ms_ssim.png", "rd_niqe.png",
        "rd_lpips.png", "rd_fid.png", "rd_kid.png", "figure.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of the val768 photos")
    arguments = parser.parse_args()
    if not Path(arguments.input).is_dir():
        print(f"skipped: {arguments.input} is not there (the project's photos)")
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "hific_tf.cli.main", "demo",
                        f"--input={arguments.input}", f"--output={scratch}"], check=True)
        seconds = time.monotonic() - started
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            shutil.copy(Path(scratch) / "report" / name, RESULTS / name)
    (RESULTS / "run.json").write_text(json.dumps(
        {"machine": machine(), "demo_seconds": round(seconds, 1), "input": arguments.input},
        indent=2) + "\n")
    print(f"results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
