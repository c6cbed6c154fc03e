#!/usr/bin/env bash
# Submits a sharded `pslg eval-rrsis` and its merge (run once all N shards succeeded):
#
#   deploy/slurm/submit-eval.sh N RESULTS.jsonl --root RRSIS-D --grounding lqvg.pth --tokenizer tok.json --sam sam_vit_h.pth
#
# Prints the two job ids. Extra sbatch options go in $SBATCH_ARGS (e.g. "--partition=gpu --gres=gpu:1").
set -euo pipefail
n=${1:?usage: submit-eval.sh N RESULTS.jsonl [eval-rrsis flags]}
results=${2:?usage: submit-eval.sh N RESULTS.jsonl [eval-rrsis flags]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array=0-$((n - 1)) "$here/eval-rrsis.sbatch" "$results" "$@")
table=()
for a in "$@"; do [[ $a == --table ]] && table=(--table); done
merge=$(sbatch --parsable --dependency=afterok:"$array" --job-name=pslg-merge --output=pslg-merge-%j.out \
    "$here/eval-rrsis.sbatch" --merge "$results" "$n" "${table[@]}")
echo "shards: $array  merge: $merge"
