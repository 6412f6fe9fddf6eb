#!/usr/bin/env bash
# The main job on a fresh machine. It installs samsa_geo into .venv and
# trains the SAMSA point-cloud classifier on the embedded CAD furniture
# shapes on the CPU for a short schedule. Then it prints the test accuracy
# and draws the points the trained model sampled. Outputs go to runs/demo
# (override with OUT=DIR), and re-running resumes from the last epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/demo}

bash scripts/install.sh
./.venv/bin/samsa-geo train modelnet --out "$out" --epochs "${EPOCHS:-25}" \
    --channels 64 --layers 2 --heads 4 --k 64 --points 512 --batch-size 16 \
    --lr 2e-3 --warmup-steps 20 --no-progress
./.venv/bin/samsa-geo visualize --run "$out" --grid 8 --out "$out/sampled_points.png"
./.venv/bin/samsa-geo visualize --run "$out" --index 0 --mode sampled --layer 0 --head 0 \
    --out "$out/sampled_points_cloud0.png"
echo "Checkpoints, metrics.jsonl, learning_curve.png, results.json and the pictures are in $out/"
