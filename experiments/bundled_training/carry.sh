#!/usr/bin/env bash
# Carries train.sh's runs in progress to the next session (issue 29): each run directory's
# last checkpoint as one float16 weights file, carried/RUN.npz (overwritten), and the steps
# it stands for, carried/RUN.step. Commit both; train.sh continues from them when the run
# directory is gone. Delete carried/ when the pair ships.
#
#   bash experiments/bundled_training/carry.sh [RUNS]
set -euo pipefail
RUNS=${1:-$HOME/runs/bundled}
HIFIC=${HIFIC:-.venv/bin/hific-tf}
CARRIED=${CARRIED:-$(dirname "$0")/carried}
mkdir -p "$CARRIED"
for run in stage1 gan control; do
    dir=$RUNS/$run
    latest=$(ls "$dir"/ckpt-*.index 2>/dev/null | sed 's/.*ckpt-\([0-9]*\).index/\1/' \
        | sort -n | tail -1 || true)
    if [ -z "$latest" ]; then continue; fi
    "$HIFIC" bundle --model="$dir" --name="$run" --output="$CARRIED" --overwrite
    echo $((latest + $(cat "$dir/step_offset" 2>/dev/null || echo 0))) > "$CARRIED/$run.step"
    echo "carried $run at step $(cat "$CARRIED/$run.step")"
done
