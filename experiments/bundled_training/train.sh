#!/usr/bin/env bash
# The bundled small models' recipe (issue 29; presets in hific_tf/configs.py, the figures in
# README.md beside this script): stage 1 (MSE + LPIPS, k_P = 1, rate control, 128 x 128
# crops) continued for 20 000 steps from the stage-1 weights bundled until 2026-12-03, then
# from it, side by side on one core each, hific-small (the GAN, beta = 0.15, one D update
# per G update) and its control mselpips-small (stage 1 continued for as many steps, no D).
# Every 2 000 steps each run scores the three photos the repository ships (validation.jsonl
# in its run directory; curves.py turns them into the learning curves) and keeps its weights
# (snapshots/step-N.npz; score_snapshots.py scores them on the 20 validation photos).
#
#   bash experiments/bundled_training/train.sh [RUNS] [SHARED_PHOTOS]
#
# Run directories resume: rerun after an interruption. A run whose directory is gone
# continues from the weights carry.sh committed (carried/RUN.npz, after carried/RUN.step
# steps; its optimiser state, and for the GAN its D, start afresh).
set -euo pipefail
RUNS=${1:-$HOME/runs/bundled}
PHOTOS=${2:-../shared/data/photos}
HIFIC=${HIFIC:-.venv/bin/hific-tf}
STAGE1_STEPS=${STAGE1_STEPS:-20000}
STAGE2_STEPS=${STAGE2_STEPS:-12000}
CARRIED=$(dirname "$0")/carried
COMMON=(--data="$PHOTOS/train,$PHOTOS/more/train" --cache_decoded
        --validation_data=photos --validate_every=2000 --snapshot_every=2000)
mkdir -p "$RUNS"

# train RUN PRESET START STEPS [hific-tf train flags]: RUNS/RUN up to STEPS steps in all.
train() {
    local run=$1 preset=$2 start=$3 steps=$4
    shift 4
    local dir=$RUNS/$run
    if [ ! -d "$dir" ] && [ -f "$CARRIED/$run.npz" ]; then
        mkdir -p "$dir"
        cat "$CARRIED/$run.step" > "$dir/step_offset"
        start=$CARRIED/$run.npz
    fi
    local done_before
    done_before=$(cat "$dir/step_offset" 2>/dev/null || echo 0)
    if [ "$done_before" -ge "$steps" ]; then return; fi
    "$HIFIC" train --preset="$preset" --run_dir="$dir" --init_from="$start" \
        --num_steps=$((steps - done_before)) "${COMMON[@]}" "$@" 2>&1 \
        | grep --line-buffered -v WARNING >> "$RUNS/$run.log"
}

START=$RUNS/stage1-start.npz
if [ ! -f "$START" ]; then
    git show 05ccb65:hific_tf/weights/mselpips-small.npz > "$START.partial"
    mv "$START.partial" "$START"
fi
train stage1 small-mselpips "$START" "$STAGE1_STEPS"
# Stage 2 starts from stage 1's last checkpoint, or from its carried weights when its
# directory is gone (carried once stage 1 has finished).
STAGE1=$RUNS/stage1
if ! ls "$STAGE1"/ckpt-*.index > /dev/null 2>&1; then STAGE1=$CARRIED/stage1.npz; fi
for run in gan control; do
    if [ $run = gan ]; then preset=small-hific; core=0; else preset=small-mselpips; core=1; fi
    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c $core \
        bash -c "$(declare -p RUNS PHOTOS HIFIC CARRIED COMMON); $(declare -f train); \
            train $run $preset '$STAGE1' $STAGE2_STEPS" &
done
wait
