#!/usr/bin/env bash
# SAM speed side by side: pslg-sam (Burn 0.21 flex, CPU) and the official PyTorch code, alternating rounds in
# one run on the same machine. Usage: scripts/compare_sam_speed.sh [vit_b|vit_l|vit_h|vit_t] [ROUNDS]
# (vit_t: MobileSAM; the official side needs `pip install mobilesam-mirror timm`).
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-vit_b}
rounds=${2:-2}
# --workspace: the same feature set as the tests, so the build reuses their target dir
cargo build --release -q --workspace --example sam_speed
for i in $(seq "$rounds"); do
  echo "round $i"
  /usr/bin/time -f '  peak RSS %M KB' "${CARGO_TARGET_DIR:-target}"/release/examples/sam_speed "$variant" 1
  /usr/bin/time -f '  peak RSS %M KB' python3 scripts/sam_speed_torch.py "$variant" 1
done
