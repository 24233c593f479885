#!/usr/bin/env bash
# The bundled small models' recipe (issue 29; presets in hific_tf/configs.py, the figures in
# README.md beside this script): stage 1 (MSE + LPIPS, k_P = 1, rate control, 128 x 128
# crops) continued for 20 000 steps from the stage-1 weights bundled until 2026-12-03, then
# from it, side by side on one core each, hific-small (the GAN, beta = 0.15, one D update
# per G update) and its control mselpips-small (stage 1 continued for as many steps, no D);
# when one has finished, the other resumes on both cores.
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
CARRIED=${CARRIED:-$(dirname "$0")/carried}
COMMON=(--data="$PHOTOS/train,$PHOTOS/more/train" --cache_decoded
        --validation_data=photos --validate_every=2000 --snapshot_every=2000)
mkdir -p "$RUNS"

steps_done() {  # RUN: steps its directory stands for (its checkpoint and step_offset)
    local dir=$RUNS/$1 latest
    latest=$(ls "$dir"/ckpt-*.index 2>/dev/null | sed 's/.*ckpt-\([0-9]*\).index/\1/' \
        | sort -n | tail -1)
    echo $(( ${latest:-0} + $(cat "$dir/step_offset" 2>/dev/null || echo 0) ))
}
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
    if [ "$(steps_done "$run")" -ge "$steps" ]; then return; fi
    local done_before
    done_before=$(cat "$dir/step_offset" 2>/dev/null || echo 0)
    "$HIFIC" train --preset="$preset" --run_dir="$dir" --init_from="$start" \
        --num_steps=$((steps - done_before)) "${COMMON[@]}" "$@" 2>&1 \
        | { grep --line-buffered -v WARNING || true; } >> "$RUNS/$run.log"  # grep: 1 if none
}

# STAGE2_START (a weights file) skips stage 1: both stage-2 runs start from it
# (experiments/gan_vs_control).
if [ -n "${STAGE2_START:-}" ]; then
    STAGE1=$STAGE2_START
else
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
fi
# Side by side on one core each while both have steps left (no oversubscription); once one
# has finished, the other is stopped (it checkpoints) and resumes on both cores.
preset_of() { if [ "$1" = gan ]; then echo small-hific; else echo small-mselpips; fi; }
left=()
for run in gan control; do
    if [ "$(steps_done $run)" -lt "$STAGE2_STEPS" ]; then left+=("$run"); fi
done
if [ ${#left[@]} -eq 2 ]; then
    pids=()
    for core in 0 1; do
        run=${left[$core]}
        TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c $core \
            bash -c "$(declare -p RUNS PHOTOS HIFIC CARRIED COMMON); $(declare -f steps_done train); \
                train $run $(preset_of "$run") '$STAGE1' $STAGE2_STEPS" &
        pids+=($!)
    done
    wait -n "${pids[@]}" || true
    for run in gan control; do  # the one still training stops at its next step
        pkill -TERM -f -- "--run_dir=$RUNS/$run " || true
    done
    wait "${pids[@]}" || true
    left=()
    for run in gan control; do
        if [ "$(steps_done $run)" -lt "$STAGE2_STEPS" ]; then left+=("$run"); fi
    done
fi
for run in "${left[@]}"; do
    train "$run" "$(preset_of "$run")" "$STAGE1" "$STAGE2_STEPS"
done
