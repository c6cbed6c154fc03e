#!/usr/bin/env bash
# Checkpoint loading side by side: pslg (examples/load_speed.rs: shapes read, model built, every tensor
# checked and applied) and torch.load of the same file, alternating processes in one run on the same machine.
# Each process loads the file once: what a user's command pays (a second load in the same process reuses
# memory the first one paged in, and flatters both sides).
# Usage: scripts/compare_load_speed.sh sam|lqvg CHECKPOINT [ROUNDS] [TEXT_CONFIG_JSON]
# (LQVG: the text encoder's HuggingFace config.json, e.g. the text_config.json that
# scripts/lqvg_reference.py writes beside its checkpoint; default roberta-base's)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?give sam or lqvg}
ckpt=${2:?give a checkpoint path}
rounds=${3:-5}
text_config=${4:-}
# --workspace: the same feature set as the tests, so the build reuses their target dir
cargo build --release -q --workspace --example load_speed
cat "$ckpt" > /dev/null # both sides read it from the page cache
for i in $(seq "$rounds"); do
  echo "round $i"
  "${CARGO_TARGET_DIR:-target}"/release/examples/load_speed "$model" "$ckpt" 1 $text_config
  python3 scripts/load_speed_torch.py "$ckpt" 1
done
