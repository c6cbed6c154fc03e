#!/usr/bin/env bash
# Side-by-side quality and speed of the weight-free pslg box -> mask path and OpenCV's grabCut (5 iterations,
# one thread) on a box -> mask case set, in the same run.
#
#   scripts/compare_opencv.sh [SET_DIR] [ROUNDS]     (defaults: ../shared/data/boxmask-dev, 3)
#
# The two tools run alternately ROUNDS times (pslg, OpenCV, pslg, OpenCV, ...) so that slow and fast phases
# of a shared machine hit both alike. Printed: every round's medians and ratio, the ratio of the best
# (lowest) medians, and the median of the per-round ratios. Quality is the same every round (both are
# deterministic); it is printed once.
#
# Needs: python3 with numpy, pillow, opencv-python-headless (pip install numpy pillow opencv-python-headless)
# and ../shared/tools/boxmask_eval.py.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-../shared/data/boxmask-dev}
ROUNDS=${2:-3}
TOOL=${BOXMASK_EVAL:-../shared/tools/boxmask_eval.py}
OUT=$(mktemp -d)
cargo build --release --quiet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for r in $(seq "$ROUNDS"); do
  ./target/release/pslg batch --cases "$SET/cases.jsonl" --out-dir "$OUT/pslg" --threads 1 > "$OUT/pslg_$r.json"
  python3 "$TOOL" opencv "$SET" --iters 5 > "$OUT/opencv_$r.json"
done
pslg_eval=$(./target/release/pslg eval --cases "$SET/cases.jsonl" --pred-dir "$OUT/pslg")
python3 "$TOOL" score "$SET" "$OUT/pslg" > "$OUT/pslg_score.json"
echo "pslg eval  : $pslg_eval"
echo "pslg (scored by boxmask_eval.py): $(cat "$OUT/pslg_score.json")"
echo "opencv     : $(cat "$OUT/opencv_1.json")"
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
p = [json.load(open(f"{out}/pslg_{r}.json"))["median_ms"] for r in range(1, rounds + 1)]
o = [json.load(open(f"{out}/opencv_{r}.json"))["median_ms"] for r in range(1, rounds + 1)]
for r, (a, b) in enumerate(zip(p, o), 1):
    print(f"round {r}: median ms/case pslg {a:.2f}, OpenCV grabCut {b:.2f}, ratio {a / b:.3f}")
print(f"best medians: pslg {min(p):.2f}, OpenCV {min(o):.2f}, ratio {min(p) / min(o):.3f}")
print(f"median of the per-round ratios: {statistics.median(a / b for a, b in zip(p, o)):.3f}")
PY
rm -rf "$OUT"
