#!/usr/bin/env bash
# Does the GAN help? (issue 40; README.md beside this script.) Stage 2 of the bundled pair
# again with the authors' training step (issue 39), twice from the same start, the shipped
# mselpips-small of 2026-12-04 (stage 1, 32 000 steps): the GAN run (small-hific, beta 0.15,
# one D update per G update) and its control (small-mselpips, stage 1 continued), the same
# seed, data, crops and number of steps, side by side on one core each
# (experiments/bundled_training/train.sh runs them, with its resume and carry rules).
#
#   bash experiments/gan_vs_control/train.sh [RUNS] [SHARED_PHOTOS]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=${1:-$HOME/runs/gan_vs_control}
PHOTOS=${2:-../shared/data/photos}
mkdir -p "$RUNS"
START=$RUNS/start.npz
if [ ! -f "$START" ]; then  # the shipped mselpips-small as of d33f471
    git -C "$HERE" show d33f471:hific_tf/weights/mselpips-small.npz > "$START.partial"
    mv "$START.partial" "$START"
fi
STAGE2_START=$START STAGE2_STEPS=${STAGE2_STEPS:-12000} CARRIED=${CARRIED:-$HERE/carried} \
    bash "$HERE/../bundled_training/train.sh" "$RUNS" "$PHOTOS"
