#!/usr/bin/env bash
# Side-by-side quality and speed of the weight-free pslg box -> mask path and OpenCV's grabCut (5 iterations,
# one thread) on a box -> mask case set, in the same run. Prints both JSON lines and the median-time ratio.
#
#   scripts/compare_opencv.sh [SET_DIR]     (default ../shared/data/boxmask-dev)
#
# Needs: python3 with numpy, pillow, opencv-python-headless (pip install numpy pillow opencv-python-headless)
# and ../shared/tools/boxmask_eval.py.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-../shared/data/boxmask-dev}
TOOL=${BOXMASK_EVAL:-../shared/tools/boxmask_eval.py}
OUT=$(mktemp -d)
cargo build --release --quiet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
pslg_batch=$(./target/release/pslg batch --cases "$SET/cases.jsonl" --out-dir "$OUT/pslg" --threads 1)
pslg_eval=$(./target/release/pslg eval --cases "$SET/cases.jsonl" --pred-dir "$OUT/pslg")
opencv=$(python3 "$TOOL" opencv "$SET" --iters 5)
python3 "$TOOL" score "$SET" "$OUT/pslg" > "$OUT/pslg_score.json"
echo "pslg batch : $pslg_batch"
echo "pslg eval  : $pslg_eval"
echo "pslg (scored by boxmask_eval.py): $(cat "$OUT/pslg_score.json")"
echo "opencv     : $opencv"
python3 - "$pslg_batch" "$opencv" <<'PY'
import json, sys
p, o = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"median ms/case: pslg {p['median_ms']:.2f}, OpenCV grabCut {o['median_ms']:.2f}, ratio {p['median_ms'] / o['median_ms']:.3f}")
PY
rm -rf "$OUT"
