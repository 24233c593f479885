#!/usr/bin/env bash
# Reproduces the paper's kind of comparison on any folder of images, in one command:
#
#   experiments/compare.sh FOLDER OUTPUT MODEL [MODEL ...]
#
# MODEL: a bundled or published model name (hific-small, hific-lo, ...) or a hific-tf
# checkpoint or SavedModel directory. The classic codecs (JPEG, WebP,
# AVIF, JPEG 2000, and JPEG XL / HEVC where `make codec-tools` installed them) are run at
# the first model's mean bpp and at twice it. The report (per_image.csv, one CompressAI-
# layout JSON per codec, summary.json, rd_*.png, figure.png) lands in OUTPUT.
# LPIPS and FID/KID read the real networks from the packages `make` installs
# (docs/metrics.md).
set -euo pipefail
if [ "$#" -lt 3 ]; then
  echo "usage: $0 FOLDER OUTPUT MODEL [MODEL ...]" >&2
  exit 2
fi
folder=$1
output=$2
shift 2
models=$(IFS=,; echo "$*")
codecs=jpeg,webp,avif,jpeg2000
command -v cjxl >/dev/null && codecs=$codecs,jpegxl
command -v heif-enc >/dev/null && codecs=$codecs,hevc
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/.venv/bin/hific-tf" evaluate --images="$folder" --output="$output" \
  --models="$models" --codecs="$codecs"
