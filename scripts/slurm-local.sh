#!/usr/bin/env bash
# A real two-node SLURM cluster on this machine, for trying and testing the
# `--executor slurm` path (no mock): both nodes (n1, n2, one CPU each) run on
# this host, on ports 17001 and 17002, in one partition `debug`.
#
#   bash scripts/slurm-local.sh start    # install (Debian, as root), configure, start; idempotent
#   bash scripts/slurm-local.sh status   # sinfo; exit 0 when both nodes answer
#   bash scripts/slurm-local.sh stop     # stop the daemons it started, remove its state folder
#   bash scripts/slurm-local.sh env      # print `export SLURM_CONF=...` for sbatch/squeue
#
# State (slurm.conf, spool, logs, pid files) lives in $GROUPUTILS_SLURM_DIR
# (default /tmp/grouputils-slurm). When /etc/slurm/slurm.conf does not exist,
# `start` links it to the generated file so that sbatch, squeue and Parsl find it
# without SLURM_CONF; `stop` removes that link again. Installing needs root and
# apt-get (Debian/Ubuntu: slurmctld slurmd slurm-client munge); elsewhere install
# those with your package manager first, then run `start` as root.
# Exit status: 0 ok, 1 failed to start, 2 cannot run here (not root, no packages).
set -euo pipefail

DIR="${GROUPUTILS_SLURM_DIR:-/tmp/grouputils-slurm}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
CTLD_PORT="${GROUPUTILS_SLURM_CTLD_PORT:-16817}"
PACKAGES=(slurmctld slurmd slurm-client munge)
NODES=(n1 n2)
declare -A PORT=([n1]=17001 [n2]=17002)

say() { echo "slurm-local: $*" >&2; }

alive() {  # alive PIDFILE: the process named in PIDFILE runs
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        say "needs root (it starts slurmctld, slurmd and munged); run it with sudo"
        exit 2
    fi
}

install() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ ${#missing[@]} = 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        say "missing ${missing[*]} and no apt-get: install ${PACKAGES[*]} with your package manager"
        exit 2
    fi
    say "installing ${PACKAGES[*]} (apt-get, about 35 s)..."
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null; }; then
        say "apt-get could not install ${PACKAGES[*]} (offline? no such packages?)"
        exit 2
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged (ours or the system's) already answers
    fi
    local key=/etc/munge/munge.key
    if [ ! -s "$key" ]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge "$key" /etc/munge
    chmod 400 "$key"
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    mkdir -p "$DIR/munge"
    chown munge:munge "$DIR/munge"  # munged writes its pid file as the munge user
    runuser -u munge -- /usr/sbin/munged --pid-file="$DIR/munge/munged.pid" 2>>"$DIR/log/munged.log"
    for _ in $(seq 50); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "munged did not start (see $DIR/log/munged.log)"
    exit 1
}

write_conf() {
    local host
    host="$(hostname -s)"
    mkdir -p "$DIR"/{state,run,log,spool}
    cat >"$CONF.new" <<EOF
# written by scripts/slurm-local.sh: two nodes on one host
ClusterName=grouputils
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdSpoolDir=$DIR/spool/%n
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=${PORT[n1]} CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=${PORT[n2]} CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.new" "$CONF"
    if [ ! -e "$ETC_CONF" ]; then
        mkdir -p "$(dirname "$ETC_CONF")"
        ln -s "$CONF" "$ETC_CONF"
    fi
}

nodes_up() {  # both nodes answer (idle, allocated or mixed)
    local states
    states="$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %T' 2>/dev/null)" || return 1
    for n in "${NODES[@]}"; do
        echo "$states" | grep -Eq "^$n (idle|allocated|mixed|completing)" || return 1
    done
}

start() {
    need_root
    install
    mkdir -p "$DIR"/{state,run,log,spool}
    start_munge
    write_conf
    export SLURM_CONF="$CONF"
    if ! alive "$DIR/run/slurmctld.pid"; then
        /usr/sbin/slurmctld -c
    fi
    for n in "${NODES[@]}"; do
        mkdir -p "$DIR/spool/$n"
        alive "$DIR/run/slurmd-$n.pid" || /usr/sbin/slurmd -N "$n"
    done
    for _ in $(seq 100); do
        if nodes_up; then
            say "two nodes up; SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.3
    done
    say "nodes did not come up in 30 s; logs in $DIR/log"
    SLURM_CONF="$CONF" sinfo -N >&2 || true
    exit 1
}

stop() {
    local f pid pids=()
    if [ -e "$CONF" ]; then
        SLURM_CONF="$CONF" scancel --quiet --partition=debug 2>/dev/null || true
    fi
    # only the daemons this script started (their pid files), never by name
    for f in "$DIR"/run/slurmd-*.pid "$DIR"/run/slurmctld.pid "$DIR"/munge/munged.pid; do
        [ -s "$f" ] || continue
        pid="$(cat "$f")"
        kill "$pid" 2>/dev/null && pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; then
        rm -f "$ETC_CONF"
    fi
    rm -rf "$DIR"
    say "stopped"
}

status() {
    if [ ! -e "$CONF" ]; then
        say "not started ($CONF missing)"
        exit 1
    fi
    SLURM_CONF="$CONF" sinfo -N || true
    nodes_up
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
