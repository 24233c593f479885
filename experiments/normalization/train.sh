#!/usr/bin/env bash
# The normalization study (docs/ablations.md): stage 1 of the small model with the
# small-mselpips recipe, once with ChannelNorm (the paper's) and once with InstanceNorm, on
# the same seed, data and steps (3 000 at 128 x 128 crops), both from scratch: the bundled
# weights are ChannelNorm's, which an InstanceNorm model cannot start from. The two runs go
# side by side, one CPU core each. Run directories resume: rerun after an interruption.
# Then study.py codes the validation photos with both.
#
#   bash experiments/normalization/train.sh [RUNS] [SHARED_PHOTOS]
set -euo pipefail
RUNS=${1:-$HOME/runs/normalization}
PHOTOS=${2:-../shared/data/photos}
HIFIC=${HIFIC:-.venv/bin/hific-tf}
STEPS=${STEPS:-3000}
mkdir -p "$RUNS"
pids=()
core=0
for normalization in channel instance; do
    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c $core \
        "$HIFIC" train --preset=small-mselpips --normalization=$normalization \
        --run_dir="$RUNS/$normalization" --num_steps="$STEPS" --crop_size=128 --seed=0 \
        --data="$PHOTOS/train,$PHOTOS/more/train" --cache_decoded \
        2>&1 | grep --line-buffered -v WARNING > "$RUNS/$normalization.log" &
    pids+=($!)
    core=$((core + 1))
done
for pid in "${pids[@]}"; do
    wait "$pid"
done
