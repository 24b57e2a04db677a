#!/usr/bin/env bash
# A real single-node Slurm on this machine, for testing profiles/slurm (tests/test_slurm.py):
# munge, slurmctld and slurmd of Debian's packages, one node with this machine's CPUs, a fake GPU
# (two gres on /dev/null and /dev/zero: scheduled, not usable) and partitions `debug` (default) and `gpu`.
# Its files live in one directory ($CURVMEM_SLURM_DIR, default .slurm/ in the repository) and /etc/slurm is
# left alone: slurmd runs configless and caches the config in /run/slurm/conf, where every client
# (sbatch, squeue, and the srun the executor plugin runs inside each job) finds it.
#   bash envs/slurm.sh install   Debian packages (root or sudo; ~10 s)
#   bash envs/slurm.sh start     fresh state, daemons up, the node idle
#   bash envs/slurm.sh stop      daemons down (munged too if start started it); nothing left running
# Needs root (SlurmUser=root). Not for a machine that already runs Slurm: it uses the default ports.
set -euo pipefail
DIR=${CURVMEM_SLURM_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.slurm}
CONF=$DIR/slurm.conf
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "slurm.sh: needs root or sudo" >&2; exit 1; }
    SUDO="sudo -E"
fi

install_packages() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
}

write_config() {
    local host cpus
    host=$(hostname -s)
    cpus=$(nproc)
    mkdir -p "$DIR"
    # accounting off (no slurmdbd): the profile polls with squeue, which needs MinJobAge >= 3x the
    # plugin's first status interval; config_overrides lets the node advertise more memory than it
    # has, so the profile's paper-size mem_mb requests are accepted.
    cat > "$CONF" <<EOF
ClusterName=curvmem
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldParameters=enable_configless
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=200000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    # two fake GPUs, so two one-GPU jobs run at once on a 2-core machine; without File= slurmd drops them
    printf 'NodeName=%s Name=gpu File=%s\n' "$host" /dev/null "$host" /dev/zero > "$DIR/gres.conf"
}

slurm_daemons() { pgrep -a -x slurmctld; pgrep -a -x slurmd; pgrep -a -x slurmstepd; }

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    install_packages
    if pid_alive "$DIR/slurmctld.pid" || pid_alive "$DIR/slurmd.pid"; then
        echo "slurm.sh: already running (bash envs/slurm.sh stop first)" >&2; exit 1
    fi
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/log"  # no drain state of an earlier run carries over
    write_config
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    if ! pgrep -x munged >/dev/null; then
        $SUDO install -d -o munge -g munge /run/munge
        [ -e /etc/munge/munge.key ] || $SUDO mungekey --create
        $SUDO runuser -u munge -- /usr/sbin/munged
        touch "$DIR/started-munged"
    fi
    if [ -e /etc/slurm/slurm.conf ]; then
        echo "slurm.sh: /etc/slurm/slurm.conf exists: this machine has its own Slurm; not starting another" >&2; exit 1
    fi
    $SUDO slurmctld -f "$CONF"
    $SUDO slurmd --conf-server "$(hostname -s)"
    for _ in $(seq 100); do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -1)
        case "$state" in
            idle*) echo "slurm.sh: node $(hostname -s) idle"; return 0 ;;
        esac
        sleep 0.2
    done
    echo "slurm.sh: the node did not become idle (state '${state:-none}'); logs in $DIR/log" >&2
    stop; exit 1
}

stop() {
    scontrol shutdown >/dev/null 2>&1 || true
    for pidfile in "$DIR/slurmctld.pid" "$DIR/slurmd.pid"; do
        for _ in $(seq 50); do pid_alive "$pidfile" || break; sleep 0.1; done
        if pid_alive "$pidfile"; then $SUDO kill "$(cat "$pidfile")"; fi
    done
    if [ "$(readlink /run/slurm/conf)" = "$DIR/spool/conf-cache" ]; then $SUDO rm -f /run/slurm/conf; fi
    if [ -e "$DIR/started-munged" ]; then
        $SUDO kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        for _ in $(seq 50); do pgrep -x munged >/dev/null || break; sleep 0.1; done
        rm -f "$DIR/started-munged"
    fi
    if slurm_daemons >/dev/null; then
        echo "slurm.sh: still running: $(slurm_daemons | tr '\n' ' ')" >&2; exit 1
    fi
    echo "slurm.sh: stopped"
}

case "${1:-}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: bash envs/slurm.sh install|start|stop" >&2; exit 2 ;;
esac
