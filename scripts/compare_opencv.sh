#!/usr/bin/env bash
# Side-by-side quality and speed of the weight-free pslg box -> mask path and OpenCV's grabCut (5 iterations,
# one thread) on a box -> mask case set, in the same run.
#
#   scripts/compare_opencv.sh [SET_DIR] [ROUNDS]     (defaults: ../shared/data/boxmask-dev, 3)
#
# Each round runs the two whole processes one after the other: `pslg batch --threads 1` and
# scripts/opencv_batch.py (decode each image once, grabCut, write every full-size PNG mask; one thread), and
# times each from the outside (process start to exit: start-up, decoding, segmentation and PNG writes). The
# rounds alternate (pslg, OpenCV, pslg, OpenCV, ...) so that slow and fast phases of a shared machine hit both
# alike. Printed per round: the whole-process wall times and their ratio, and the in-process median per case
# (pslg's whole `segment` call against OpenCV's `grabCut` call) and its ratio; then the best of each and the
# median of the per-round ratios. Quality is the same every round (both are deterministic): it is scored once
# by ../shared/tools/boxmask_eval.py and by `pslg eval`.
#
# Needs: python3 with numpy, pillow, opencv-python-headless (pip install numpy pillow opencv-python-headless)
# and ../shared/tools/boxmask_eval.py.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-../shared/data/boxmask-dev}
ROUNDS=${2:-3}
TOOL=${BOXMASK_EVAL:-../shared/tools/boxmask_eval.py}
PSLG=${CARGO_TARGET_DIR:-target}/release/pslg
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
cargo build --release --quiet -p pslg-cli
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
now() { date +%s%N; }
for r in $(seq "$ROUNDS"); do
  rm -rf "$OUT/pslg" "$OUT/opencv"
  t0=$(now); "$PSLG" batch --cases "$SET/cases.jsonl" --out-dir "$OUT/pslg" --threads 1 > "$OUT/pslg_$r.json"; t1=$(now)
  echo "{\"wall_s\": $(( (t1 - t0) / 1000000 ))e-3}" > "$OUT/pslg_wall_$r.json"
  t0=$(now); python3 scripts/opencv_batch.py "$SET/cases.jsonl" "$OUT/opencv" --iters 5 > "$OUT/opencv_$r.json"; t1=$(now)
  echo "{\"wall_s\": $(( (t1 - t0) / 1000000 ))e-3}" > "$OUT/opencv_wall_$r.json"
done
echo "pslg eval  : $("$PSLG" eval --cases "$SET/cases.jsonl" --pred-dir "$OUT/pslg")"
echo "pslg   (scored by boxmask_eval.py): $(python3 "$TOOL" score "$SET" "$OUT/pslg")"
echo "OpenCV (scored by boxmask_eval.py): $(python3 "$TOOL" score "$SET" "$OUT/opencv")"
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name, r, key: json.load(open(f"{out}/{name}_{r}.json"))[key]
pw = [load("pslg_wall", r, "wall_s") for r in range(1, rounds + 1)]
ow = [load("opencv_wall", r, "wall_s") for r in range(1, rounds + 1)]
pm = [load("pslg", r, "median_ms") for r in range(1, rounds + 1)]
om = [load("opencv", r, "median_ms") for r in range(1, rounds + 1)]
for r in range(rounds):
    print(f"round {r + 1}: whole process pslg {pw[r]:.2f} s, OpenCV {ow[r]:.2f} s, ratio {pw[r] / ow[r]:.3f}; "
          f"median ms/case pslg {pm[r]:.2f}, OpenCV grabCut {om[r]:.2f}, ratio {pm[r] / om[r]:.3f}")
print(f"whole process, best: pslg {min(pw):.2f} s, OpenCV {min(ow):.2f} s, ratio {min(pw) / min(ow):.3f}; "
      f"median of the per-round ratios {statistics.median(a / b for a, b in zip(pw, ow)):.3f}")
print(f"median per case, best: pslg {min(pm):.2f} ms, OpenCV {min(om):.2f} ms, ratio {min(pm) / min(om):.3f}; "
      f"median of the per-round ratios {statistics.median(a / b for a, b in zip(pm, om)):.3f}")
PY
