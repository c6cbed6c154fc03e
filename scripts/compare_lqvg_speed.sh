#!/usr/bin/env bash
# LQVG speed side by side: pslg-grounding (Burn flex, the CLI's CPU backend) and the official PyTorch code (random weights,
# released architecture, 800x800, 2 threads), alternating rounds in one run on the same machine.
# Usage: scripts/compare_lqvg_speed.sh LQVG_CHECKOUT [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
lqvg=${1:?give the path of a LANMNG/LQVG checkout}
rounds=${2:-2}
cargo build --release -q -p pslg-grounding --example lqvg_speed
for i in $(seq "$rounds"); do
  echo "round $i"
  /usr/bin/time -f '  peak RSS %M KB' "${CARGO_TARGET_DIR:-target}"/release/examples/lqvg_speed 1
  /usr/bin/time -f '  peak RSS %M KB' python3 scripts/lqvg_speed_torch.py "$lqvg" 1
done
