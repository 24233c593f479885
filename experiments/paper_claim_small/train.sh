#!/usr/bin/env bash
# The bundled small models' recipe of issue 24 on the 70 training photos (presets in
# hific_tf/configs.py, run for that lengths): stage 1 (MSE + LPIPS, k_P = 1, rate
# control) continued from earlier stage-1 weights, then for each seed a stage 2 with the paper's GAN (beta = 0.15, one D
# update per G update) and its matched control (the same steps with beta = 0). Each pair runs
# side by side, one CPU core each. Run directories resume: rerun after an interruption.
#
#   bash experiments/paper_claim_small/train.sh [RUNS] [SHARED_PHOTOS]
#
# SEEDS (default "1 2 3") picks the stage-2 seeds; START the stage-1 weights to continue
# from (default: the mselpips-small bundled until 2026-12-02, taken from git history).
set -euo pipefail
RUNS=${1:-$HOME/runs/paper_claim_small}
PHOTOS=${2:-../shared/data/photos}
HIFIC=${HIFIC:-.venv/bin/hific-tf}
SEEDS=${SEEDS:-"1 2 3"}
START=${START:-$RUNS/stage1-start.npz}
DATA=(--data="$PHOTOS/train,$PHOTOS/more/train" --cache_decoded)
mkdir -p "$RUNS"
if [ ! -f "$START" ]; then
    git show a7a6b6f:hific_tf/weights/mselpips-small.npz > "$START.partial"
    mv "$START.partial" "$START"
fi
"$HIFIC" train --preset=small-mselpips --run_dir="$RUNS/stage1" --init_from="$START" \
    --num_steps=2000 "${DATA[@]}" 2>&1 | grep --line-buffered -v WARNING > "$RUNS/stage1.log"
for seed in $SEEDS; do
    for kind in gan control; do
        if [ $kind = gan ]; then preset=small-hific; core=0; else
            preset=small-hific-control; core=1; fi
        TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c $core \
            "$HIFIC" train --preset=$preset --run_dir="$RUNS/$kind-seed$seed" \
            --init_from="$RUNS/stage1" --seed="$seed" --num_steps=1200 "${DATA[@]}" \
            2>&1 | grep --line-buffered -v WARNING > "$RUNS/$kind-seed$seed.log" &
    done
    wait
done
