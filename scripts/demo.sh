#!/usr/bin/env bash
# The main job, end to end, on a fresh machine in a few minutes (CPU is enough):
#   1. scripts/setup_env.sh: the .venv with everything installed (skip: --no-setup)
#   2. a synthetic dataset in the tinyvoc layout          -> logs/demo/data
#   3. training from random weights: heads, then all layers (a few steps, small images)
#                                                         -> logs/demo/runs
#   4. COCO bbox + segm mAP on the held-out split         -> logs/demo/coco_eval.json
#   5. a COCO-format submission for test.json             -> logs/demo/submission.json
#   6. a picture of the detections in one test image      -> logs/demo/detections.png
# Every step is a samples/tinyvoc.py command, exactly as one runs it on the real data
# (the commands for that are printed at the end). A few steps from random weights
# learn nothing useful: the demo shows the pipeline works, not what the model can do.
#
# Usage: bash scripts/demo.sh [--no-setup]
# Environment: DEMO_DIR (default logs/demo), DEMO_IMAGE_SIZE (px, multiple of 64;
# default 128), DEMO_STEPS (steps per training stage, default 3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

setup=1
for arg in "$@"; do
  case "$arg" in
    --no-setup) setup=0 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$arg' (only --no-setup)" >&2; exit 2 ;;
  esac
done

demo="${DEMO_DIR:-logs/demo}"
case "$demo" in /*) ;; *) demo="$root/$demo" ;; esac
size="${DEMO_IMAGE_SIZE:-128}"
steps="${DEMO_STEPS:-3}"
data="$demo/data"
runs="$demo/runs"
py="$root/.venv/bin/python"
tinyvoc=(samples/tinyvoc.py)
# The same split for train and evaluate: a quarter of the 12 synthetic images held out.
split=(--val-fraction 0.25 --seed 0)
export MPLBACKEND=Agg
start=$SECONDS

step() { printf '\n=== [%d s] %s\n' "$((SECONDS - start))" "$*"; }

if [ "$setup" = 1 ]; then
  step "Setting up .venv (scripts/setup_env.sh)"
  bash scripts/setup_env.sh
fi
if [ ! -x "$py" ]; then
  echo "demo.sh: $py not found; run without --no-setup (or bash scripts/setup_env.sh) first" >&2
  exit 1
fi

# A fresh demo each time: only the demo's own outputs are removed.
rm -rf "$data" "$runs" "$demo/coco_eval.json" "$demo/submission.json" "$demo/detections.png"
mkdir -p "$demo"

step "Writing a synthetic tinyvoc dataset to $data"
echo "(it contains a grayscale and a corrupt JPEG and invalid annotations on purpose:"
echo " the warnings about them below are expected)"
"$py" "${tinyvoc[@]}" synth "$data" --train 12 --test 4

step "Training from random weights: $steps steps of the heads, then $steps of all layers, at ${size} px"
"$py" "${tinyvoc[@]}" train --dataset "$data" --weights none --logs "$runs" \
  --image-size "$size" --heads-epochs 1 --all-epochs 1 --steps "$steps" --val-steps 1 "${split[@]}"

step "Evaluating the last checkpoint on the held-out split (COCO bbox and segm)"
"$py" "${tinyvoc[@]}" evaluate --dataset "$data" --weights last --logs "$runs" \
  --image-size "$size" "${split[@]}" --out "$demo/coco_eval.json"

step "Writing the submission for test.json"
"$py" "${tinyvoc[@]}" submit --dataset "$data" --weights last --logs "$runs" \
  --image-size "$size" --out "$demo/submission.json"

step "Drawing the detections in one test image"
"$py" "${tinyvoc[@]}" detect --image "$data/test_images/synthetic_test_000001.jpg" \
  --weights last --logs "$runs" --image-size "$size" --min-confidence 0.5 \
  --out "$demo/detections.png"

checkpoint="$(ls -1 "$runs"/tinyvoc*/mask_rcnn_tinyvoc_*.h5 | tail -n 1)"
cat <<EOF

=== Done in $((SECONDS - start)) s. Outputs:
  dataset       $data
  checkpoints   $(dirname "$checkpoint")  (last: $(basename "$checkpoint"))
  evaluation    $demo/coco_eval.json
  submission    $demo/submission.json
  detections    $demo/detections.png

On the real data (train_images/, pascal_train.json, test_images/, test.json in one
folder), at the default 512 px and with the default epochs (20 heads + 20 all):
  .venv/bin/python samples/tinyvoc.py train    --dataset=/path/to/tinyvoc --weights=imagenet
  .venv/bin/python samples/tinyvoc.py evaluate --dataset=/path/to/tinyvoc --weights=last
  .venv/bin/python samples/tinyvoc.py submit   --dataset=/path/to/tinyvoc --weights=last --out=submission.json
  .venv/bin/python samples/tinyvoc.py detect   --weights=last --image=/path/to/tinyvoc/test_images/IMAGE.jpg --out=detections.png
(--weights=imagenet downloads the ResNet-50 ImageNet weights once; offline, the error
says which file to put where. Resume an interrupted run with train --weights=last.)
EOF
