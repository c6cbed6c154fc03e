#!/usr/bin/env bash
# A single-node Slurm cluster in a private folder, for tests: munged, slurmctld and slurmd run as root with
# their config, sockets, state and logs under DIR; nothing outside DIR is touched.
#
#   deploy/slurm/local-cluster.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`
#   deploy/slurm/local-cluster.sh stop DIR    # stops the daemons it started, by PID
#
# Needs Debian's slurmctld, slurmd, slurm-client and munge packages (`.ci/run` installs them).
set -euo pipefail

cmd=${1:?usage: local-cluster.sh start|stop DIR}
dir=${2:?usage: local-cluster.sh start|stop DIR}

stop() {
    for name in slurmd slurmctld munged; do
        local pidfile="$dir/$name.pid"
        [[ -s $pidfile ]] || continue
        local pid
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

start() {
    mkdir -p "$dir"/{state,spool,log}
    dir=$(cd "$dir" && pwd)
    local host cpus mem port
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    # Private ports, so that a system Slurm on this machine is not disturbed.
    port=$(( 20000 + RANDOM % 20000 ))
    # munged: a private key and socket.
    dd if=/dev/urandom of="$dir/munge.key" bs=1 count=1024 status=none
    chmod 600 "$dir/munge.key"
    munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
        --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"
    cat >"$dir/slurm.conf" <<CONF
ClusterName=pslgtest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    # Wait for the node to come up.
    for _ in $(seq 100); do
        if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "export SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.2
    done
    echo "local-cluster.sh: the node did not come up; see $dir/log" >&2
    sinfo >&2 || true
    return 1
}

case $cmd in
    start) start || { stop; exit 1; } ;;
    stop) stop ;;
    *) echo "usage: local-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
