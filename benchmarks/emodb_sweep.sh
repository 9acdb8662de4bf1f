#!/usr/bin/env bash
# The CPU preset's validation sweep on EmoDB (issue 10): each configuration below is a CPU
# preset's recipe with a change, run over the 10 leave-one-speaker-out folds; configurations
# are compared on the mean VALIDATION UA only (the test UA is printed for the record, never used
# for a choice). Runs several configurations at once, so it suits a many-core or GPU machine:
#
#   bash benchmarks/emodb_sweep.sh DATA_DIR OUT_DIR [DEVICES] [AT_ONCE]
#
# DATA_DIR: an EmoDB store prepared with `--features mel --n-mels 64`; OUT_DIR: runs and
# summary.md; DEVICES: the fold workers of one configuration (default cpu,cpu); AT_ONCE:
# configurations running at the same time (default 1). SWEEP_ONLY="c1 s1" runs those only;
# SWEEP_EXTRA="--fold 1 --set optim.epochs=1" is added to every run (a quick try of the plumbing);
# SWEEP_DEADLINE=SECONDS stops every run that long after the start (the summary still comes,
# with the folds that finished) and starts no configuration after it.
# Uses the ser_cl source in place (PYTHONPATH), so the machine's own PyTorch works.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="$1"; OUT="$2"; DEVICES="${3:-cpu,cpu}"; AT_ONCE="${4:-1}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" SER_CL_PROGRESS=0 OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PYTHON:-python3}"
read -r -a EXTRA <<< "${SWEEP_EXTRA:-}"

CE="experiments/ce_baseline.toml"
SSL="experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug"
V1="--preset cpu-v1"  # rounds 1-3: changes to the first CPU preset
SPK="--set model.input_norm=speaker"
WIDE="--set model.conv_channels=32 --set model.gru_hidden=64"
NOREG="--set augment.mixup_alpha=0 --set augment.time_stretch=0 --set loss.label_smoothing=0"
ONECROP="--set kind.pretrain.augment.view_frames=0 --set kind.pretrain.data.max_frames=150"
# name | experiment and stages | preset and change
CONFIGS=(
  "c0|$CE|$V1"
  "c1|$CE|$V1 $SPK"
  "s0|$SSL|$V1"
  "s1|$SSL|$V1 $SPK"
  "c2|$CE|$V1 $SPK --set model.pooling=stats"
  "c3|$CE|$V1 $SPK --set model.pooling=attention"
  "c4|$CE|$V1 $SPK --set optim.monitor=val_loss"
  "c5|$CE|$V1 $SPK $NOREG"
  "c6|$CE|$V1 $SPK --set optim.epochs=45 --set optim.max_steps=675"
  "c7|$CE|$V1 $SPK $WIDE"
  "s2|$SSL|$V1 $SPK --set loss.tau=0.2"
  # round 2: the round-1 changes that raised validation UA, combined
  "c8|$CE|$V1 $SPK $WIDE --set model.pooling=attention"
  "c9|$CE|$V1 $SPK $WIDE $NOREG"
  "c10|$CE|$V1 $SPK $WIDE --set model.pooling=attention $NOREG"
  "c11|$CE|$V1 $SPK --set model.pooling=attention $NOREG"
  "s3|$SSL|$V1 $SPK $WIDE"
  "s4|$SSL|$V1 $SPK $WIDE --set loss.tau=0.2"
  "s5|$SSL|$V1 $SPK $WIDE --set loss.tau=0.2 --set model.pooling=attention"
  "s6|$SSL|$V1 $SPK --set loss.tau=0.2 --set model.pooling=attention"
  # round 3: the fine-tuning of the best round-2 pretraining
  "s7|$SSL|$V1 $SPK $WIDE $NOREG"
  "s8|$SSL|$V1 $SPK $WIDE --set loss.tau=0.2 $NOREG"
  "s9|$SSL|$V1 $SPK $WIDE --set finetune.freeze_epochs=0"
  "s10|$SSL|$V1 $SPK $WIDE --set loss.tau=0.2 --set finetune.freeze_epochs=0 $NOREG"
  # round 4: today's --preset cpu (c9's CE; s8 with 10 pretraining and 20 fine-tuning epochs,
  # to fit 30 minutes on 2 cores), and a second seed of each
  "n0|$CE|--preset cpu"
  "n1|$SSL|--preset cpu"
  "n2|$CE|--preset cpu --set optim.seed=1"
  "n3|$SSL|--preset cpu --set optim.seed=1"
  # round 5, on 2 CPU cores one configuration at a time (DEVICES cpu,cpu, AT_ONCE 1): SSL -> CE
  # of the preset as it stood after round 4 (both views one crop: ONECROP) with one change each,
  # and CE with the moving average of the weights. r3's views are today's --preset cpu.
  "r0|$SSL|--preset cpu $ONECROP --set model.proj_dim=128"
  "r1|$SSL|--preset cpu $ONECROP --set kind.finetune.optim.lr=1e-3 --set kind.finetune.optim.epochs=30 --set kind.finetune.optim.max_steps=450"
  "r2|$SSL|--preset cpu $ONECROP --set kind.finetune.optim.ema_decay=0.98"
  "r3|$SSL|--preset cpu"
  "r4|$CE|--preset cpu --set optim.ema_decay=0.98"
)

run_config() {  # run_config "name|experiment|change"
  local name exp change
  IFS='|' read -r name exp change <<< "$1"
  local t0; t0=$(date +%s)
  local left=$(( START + ${SWEEP_DEADLINE:-864000} - t0 ))
  [ "$left" -gt 0 ] || { echo "$name: not started (deadline)" | tee -a "$OUT/walls.txt"; return; }
  # shellcheck disable=SC2086  # exp and change are word lists
  timeout -k 5 "$left" "$PY" -m ser_cl.cli run $exp $change --set data.dir="$DATA" --set runs_dir="$OUT/$name" \
      --devices "$DEVICES" --no-report "${EXTRA[@]}" > "$OUT/$name.log" 2>&1
  echo "$name: exit $?, wall $(( $(date +%s) - t0 )) s" | tee -a "$OUT/walls.txt"
}

: > "$OUT/walls.txt"
START=$(date +%s)
for entry in "${CONFIGS[@]}"; do
  name="${entry%%|*}"
  if [ -n "${SWEEP_ONLY:-}" ] && [[ " $SWEEP_ONLY " != *" $name "* ]]; then continue; fi
  while [ "$(jobs -rp | wc -l)" -ge "$AT_ONCE" ]; do sleep 1; done
  run_config "$entry" &
done
wait
pkill -f "ser_cl.cli run" 2>/dev/null  # fold workers a deadline left behind

"$PY" - "$OUT" "${CONFIGS[@]}" <<'PY' | tee "$OUT/summary.md"
import json, pathlib, statistics, sys
out, configs = pathlib.Path(sys.argv[1]), sys.argv[2:]
walls = dict(line.split(":", 1) for line in (out / "walls.txt").read_text().splitlines() if ":" in line)
print("| config | change | folds | val UA | test UA | wall |\n|---|---|---:|---:|---:|---|")
for entry in configs:
    name, exp, change = entry.split("|")
    final = "ft_ce_aug" if "selfsup" in exp else "train"
    metrics = [json.loads(p.read_text()) for p in sorted(out.glob(f"{name}/*/{final}/fold-*/metrics.json"))]
    done = [m for m in metrics if m.get("status") == "complete" and m.get("test")]
    if not done:
        continue
    val = statistics.mean(100 * m["val"]["ua"] for m in done)
    test = statistics.mean(100 * m["test"]["ua"] for m in done)
    print(f"| {name} | {exp.split('/')[-1].split()[0]} {change or '(the preset)'} | {len(done)} | {val:.2f} | "
          f"{test:.2f} | {walls.get(name, '').strip()} |")
PY
