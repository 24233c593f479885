"""The bundled models on the 20 validation photos against JPEG, WebP and AVIF: the README's
table and plots.

Runs `hific-tf evaluate` on photos/val768 and photos/more/val768 of the shared data (20
photos, 768 x 512): both bundled models, then JPEG, WebP and AVIF aimed at hific-small's mean
bpp and twice it; per photo bpp, PSNR, MS-SSIM, LPIPS and NIQE, and FID and KID over the
FID/256 patches (8 per photo). Keeps the report in benchmarks/results/bundled_validation/,
with the machine and the wall time.

    .venv/bin/python benchmarks/bundled_models.py --photos=../shared/data/photos
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import machine

RESULTS = Path(__file__).parent / "results" / "bundled_validation"
FOLDERS = ("val768", "more/val768")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True,
                        help="the shared photos folder, holding val768 and more/val768")
    arguments = parser.parse_args()
    folders = [Path(arguments.photos) / name for name in FOLDERS]
    missing = [str(folder) for folder in folders if not folder.is_dir()]
    if missing:
        print(f"skipped: {', '.join(missing)} not there (the project's shared photos)")
        return 0
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "hific_tf.cli.main", "evaluate",
                    f"--images={','.join(map(str, folders))}",
                    "--models=hific-small,mselpips-small", "--codecs=jpeg,webp,avif",
                    f"--output={RESULTS}"], check=True)
    (RESULTS / "run.json").write_text(json.dumps(
        {"machine": machine(), "seconds": round(time.monotonic() - started, 1),
         "photos": [str(folder) for folder in folders]}, indent=2) + "\n")
    print(f"results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
