#!/usr/bin/env bash
# `ser-cl run --launcher slurm` on a real (single-node, throw-away) SLURM cluster.
#
# Installs slurm + munge from the Debian packages (apt-get; needs root), writes a one-node
# slurm.conf for this machine, starts munged, slurmctld and slurmd, then on the synthetic corpus:
#   1. submits a 2-fold grid of experiments/quickstart.toml (2 variants: pretrain -> ft_ce_aug,
#      tiny encoder) with --launcher slurm --no-wait: a job array of 2 tasks, one per fold;
#   2. scancels the fold-01 task mid-run (once its fine-tuning has written last.pt);
#   3. checks that fold-01 is not complete (`ser-cl status`), resubmits the same command (waiting):
#      only fold-01 is submitted, its fine-tuning resumes from last.pt ("resuming after epoch");
#   4. checks that every fold of both variants is complete (metrics.json, status "complete").
#
# Usage (as root, from the repository root, with the venv installed):
#   bash benchmarks/slurm_check.sh [WORK_DIR]        # default WORK_DIR: /tmp/ser-cl-slurm-check
# It leaves the daemons running (kill them by the pids it prints) and the runs in WORK_DIR.
# Tested: Debian 12 (slurm-wlm 22.05.8), 2 CPUs, run as root in a container without systemd.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-/tmp/ser-cl-slurm-check}
PY=${PY:-$ROOT/.venv/bin/python}
SERCL=${SERCL:-$ROOT/.venv/bin/ser-cl}
say() { echo "[slurm_check] $*" >&2; }

# -- 1. slurm and munge ----------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi
"$PY" -c "import submitit" 2>/dev/null || "$ROOT/.venv/bin/pip" install -q -c "$ROOT/constraints-cpu.txt" submitit

NODE=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge /var/lib/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=sercl
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
MaxArraySize=1000
# scancel: SIGTERM, then SIGKILL after KillWait s (default 30). submitit lets SIGTERM pass (it
# checkpoints on the time-limit signal instead), so with the default a short task just finishes.
KillWait=2
NodeName=$NODE CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

if ! pgrep -x munged >/dev/null; then
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    say "munged started (pid $(pgrep -x munged))"
fi
munge -n | unmunge >/dev/null
if pgrep -x slurmctld >/dev/null; then scontrol reconfigure; else slurmctld; say "slurmctld started (pid $(pgrep -x slurmctld))"; fi
pgrep -x slurmd >/dev/null || { slurmd; say "slurmd started (pid $(pgrep -x slurmd))"; }
for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && break
    sleep 1
done
sinfo
sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)' || { say "the node did not come up"; exit 1; }

# -- 2. the grid -----------------------------------------------------------------------------------
rm -rf "$WORK"; mkdir -p "$WORK"
"$SERCL" synth "$WORK/raw" --per-speaker 4 >/dev/null
"$SERCL" prepare "$WORK/raw" --out "$WORK/mel" --features mel --n-mels 40 -j 1 -q >/dev/null
RUNS=$WORK/runs
ARGS=(run "$ROOT/experiments/quickstart.toml" --fold 1 --fold 2 --launcher slurm --slurm-cpus-per-task 1
      --slurm-time 20 --no-report
      --set model.preset=small --set model.conv_channels=4 --set model.gru_hidden=16 --set model.n_heads=2
      --set model.freq_kernels=scaled --set model.d_ff=32 --set optim.epochs=3 --set kind.finetune.optim.epochs=60
      --set optim.batch_size=32
      --set device=cpu --set "data.dir=\"$WORK/mel\"" --set "runs_dir=\"$RUNS\"")
cd "$WORK"

say "submitting (no wait)"
"$SERCL" "${ARGS[@]}" --no-wait 2>&1 | tee "$WORK/submit1.log"
FIRST=$(grep -oE 'job\(s\) [0-9]+_[0-9]+' "$WORK/submit1.log" | grep -oE '[0-9]+_[0-9]+')
say "fold-01 task: $FIRST; waiting for its fine-tuning's last.pt"
LAST=$RUNS/quickstart/ft_ce_aug/fold-01/last.pt
for _ in $(seq 1500); do
    [ -f "$LAST" ] && break
    sleep 0.2
done
[ -f "$LAST" ] || { say "fold-01 never started fine-tuning"; squeue; exit 1; }
scancel "$FIRST"
say "scancelled $FIRST mid-run"
for _ in $(seq 300); do
    [ -z "$(squeue -h)" ] && break
    sleep 2
done
"$SERCL" status "$RUNS" | tee "$WORK/status1.log"
if grep -q "pretrain  complete 2/5" "$WORK/status1.log" && grep -q "ft_ce_aug  complete 2/5" "$WORK/status1.log"; then
    say "fold-01 finished before the scancel landed: the check is void (raise optim.epochs)"; exit 1
fi

# -- 3. resubmit: only what is not complete, resumed from last.pt ------------------------------------
say "resubmitting (waiting)"
"$SERCL" "${ARGS[@]}" 2>&1 | tee "$WORK/submit2.log"
grep -q "submitted 1 fold task(s) (fold-01)" "$WORK/submit2.log"
if grep -q "fold-02" "$WORK/submit2.log"; then say "fold-02 was complete but submitted again"; exit 1; fi

# -- 4. every fold complete ------------------------------------------------------------------------
"$SERCL" status "$RUNS" | tee "$WORK/status2.log"
for stage in pretrain ft_ce_aug; do
    for fold in fold-01 fold-02; do
        "$PY" - "$RUNS/quickstart/$stage/$fold/metrics.json" <<'EOF'
import json, sys
status = json.load(open(sys.argv[1])).get("status")
assert status == "complete", (sys.argv[1], status)
EOF
    done
done
grep -h "resuming after epoch" "$RUNS/quickstart/.submitit/"*_log.* || { say "no task resumed from last.pt"; exit 1; }
grep -l CANCELLED "$RUNS/quickstart/.submitit/"*_log.err >/dev/null || { say "no task log says CANCELLED"; exit 1; }
say "OK: every fold of both variants is complete after a scancel and a resubmission"
say "daemons: munged $(pgrep -x munged) slurmctld $(pgrep -x slurmctld) slurmd $(pgrep -x slurmd)"
