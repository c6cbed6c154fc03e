#!/usr/bin/env bash
# The scale-out contract on a real Slurm (a single-node cluster this script starts and stops):
#   1. a single-process `pslg batch` over the cases is the reference;
#   2. `deploy/slurm/batch.sbatch` runs as an array of 3 tasks; part-way, its running tasks are killed with
#      SIGKILL (`scancel --signal=KILL --full`);
#   3. every mask present then must be a complete PNG, and nothing else may be there but the temporary files
#      of interrupted writes;
#   4. the same array is submitted again, and must finish the job: OUT_DIR byte-identical to the reference,
#      no leftovers.
#
#   scripts/slurm_array_test.sh PSLG_BIN CASES.jsonl WORK_DIR
#
# Needs slurmctld, slurmd, slurm-client and munge (Debian packages); run as root. Exits non-zero on any
# failure; the daemons it started are stopped by PID on every exit.
set -euo pipefail

pslg=$(realpath "${1:?usage: slurm_array_test.sh PSLG_BIN CASES.jsonl WORK_DIR}")
src_cases=$(realpath "${2:?usage: slurm_array_test.sh PSLG_BIN CASES.jsonl WORK_DIR}")
work=${3:?usage: slurm_array_test.sh PSLG_BIN CASES.jsonl WORK_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
tasks=3
rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
cluster="$work/cluster"
trap '"$repo/deploy/slurm/local-cluster.sh" stop "$cluster"' EXIT
fail() { echo "slurm_array_test: FAILED: $*" >&2; exit 1; }

# The cases three times over (ids suffixed), so that each task runs for a few seconds and the kill lands
# mid-run; paths resolved against the original case file's folder.
cases="$work/cases.jsonl"
python3 - "$src_cases" "$cases" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
root = os.path.dirname(os.path.abspath(src))
with open(src) as f, open(dst, "w") as out:
    rows = [json.loads(l) for l in f if l.strip()]
    for rep in range(3):
        for r in rows:
            r = dict(r)
            r["id"] = r["id"] if rep == 0 else f"{r['id']}_r{rep}"
            for k in ("image", "mask"):
                if k in r:
                    r[k] = os.path.join(root, r[k])
            out.write(json.dumps(r) + "\n")
PY
total=$(grep -c . "$cases")

t0=$(date +%s.%N)
"$pslg" batch --cases "$cases" --out-dir "$work/reference" --threads 1 > "$work/reference.json"
t1=$(date +%s.%N)
echo "slurm_array_test: single process: $total cases in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"

eval "$("$repo/deploy/slurm/local-cluster.sh" start "$cluster")"
export SLURM_CONF
out="$work/out"
logs="$work/logs"
mkdir -p "$logs"
submit() {
    PSLG_BIN="$pslg" sbatch --parsable --array=0-$((tasks - 1)) --cpus-per-task=1 \
        --output="$logs/$1-%A_%a.out" "$repo/deploy/slurm/batch.sbatch" "$cases" "$out"
}
wait_job() {
    for _ in $(seq 1200); do
        [[ -z $(squeue -h -j "$1" 2>/dev/null) ]] && return 0
        sleep 0.25
    done
    fail "job $1 did not finish in 5 minutes"
}
count_masks() { find "$out" -maxdepth 1 -name '*.png' ! -name '.*' 2>/dev/null | wc -l; }

# 2. Submit, wait until the tasks have written some masks, kill them.
jid=$(submit first)
for _ in $(seq 2400); do
    (( $(count_masks) >= total / 10 )) && break
    sleep 0.05
done
scancel --signal=KILL --full "$jid"
wait_job "$jid"
killed_at=$(count_masks)
echo "slurm_array_test: killed with $killed_at of $total masks written"
(( killed_at < total )) || fail "the tasks finished before the kill ($killed_at masks); the test needs more cases"

# 3. What is there is complete, or a temporary file.
partials=0
while IFS= read -r -d '' f; do
    name=$(basename "$f")
    case $name in
        .*.png.partial-*) partials=$((partials + 1)) ;;
        *.png)
            # A complete PNG ends with its IEND chunk (and its CRC).
            [[ $(tail -c 8 "$f" | od -An -tx1 | tr -d ' \n') == 49454e44ae426082 ]] \
                || fail "$name is not a complete PNG" ;;
        *) fail "unexpected file $name after the kill" ;;
    esac
done < <(find "$out" -mindepth 1 -print0)
echo "slurm_array_test: after the kill, every mask is complete ($partials temporary file(s) of killed writes)"

# 4. The same array again finishes the job.
t0=$(date +%s.%N)
jid=$(submit second)
wait_job "$jid"
t1=$(date +%s.%N)
echo "slurm_array_test: resubmitted array finished in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
skipped=0
written=0
for k in $(seq 0 $((tasks - 1))); do
    log="$logs/second-${jid}_$k.out"
    [[ -f $log ]] || fail "no output of task $k ($log)"
    line=$(grep '^{' "$log" | tail -1) || fail "task $k printed no summary: $(cat "$log")"
    read -r s w f < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["skipped"], j["written"], j["failed"])' "$line")
    [[ $f == 0 ]] || fail "task $k had failures: $line"
    skipped=$((skipped + s))
    written=$((written + w))
done
echo "slurm_array_test: resumed: $skipped skipped, $written written"
(( skipped + written == total )) || fail "skipped + written = $((skipped + written)), expected $total"
diff -r "$work/reference" "$out" > "$work/diff.txt" || fail "outputs differ from the single process: $(head -5 "$work/diff.txt")"
echo "slurm_array_test: OK: $total masks byte-identical to the single-process run, no leftovers"
