#!/usr/bin/env bash
# The GPU check: one script, about 8 minutes on one H100/H200, no network, the machine's own
# PyTorch (the repository is used in place through PYTHONPATH; nothing is installed).
#
#   bash benchmarks/gpu_check.sh [EMODB_WAV_DIR] [OUT_DIR]
#
# EMODB_WAV_DIR (default .gpu/emodb-wav, a git-ignored copy of EmoDB's WAVs) is prepared there;
# OUT_DIR (default $OUT, else gpu-check-out) receives:
#   log.txt          everything printed
#   results.md       the figures: environment, CUDA tests, throughput, GRU variants, EmoDB
#   report_ce.md     ser-cl report of the CE baseline (thesis encoder, 50 epochs, 10 folds)
#   report_ssl.md    ser-cl report of self-supervised NT-Xent -> CE ft aug
#   runs.tgz         every fold's metrics.json / metrics.jsonl / probe.json / run.json
# Sections run in order of importance, each under its own time limit, so a slow one cannot
# take the others' results with it. Set GPU_CHECK_SMOKE=1 to try the script on a CPU in a
# minute (tiny encoder, 1 epoch, 2 folds): it checks the plumbing, not the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-.gpu/emodb-wav}"
OUT_DIR="${2:-${OUT:-gpu-check-out}}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SER_CL_PROGRESS=0
PY="${PYTHON:-python3}"
CLI=("$PY" -m ser_cl.cli)
WORK=.gpu/work
rm -rf "$WORK"; mkdir -p "$WORK"
LOG="$OUT_DIR/log.txt"; RES="$OUT_DIR/results.md"
: > "$LOG"; : > "$RES"
exec > >(tee -a "$LOG") 2>&1

if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  DEV=cpu; DEVICES=cpu,cpu; T_STEPS=2; FOLDS=(--fold 1 --fold 2)
  EXTRA=(--preset cpu-thesis --set optim.epochs=1 --set finetune.freeze_epochs=0 --set model.conv_channels=4)
  TP=(--devices cpu --preset small --steps 2 --batch-sizes 8 --losses ce)
  GRU=(--device cpu --steps 1 --batch-sizes 8); PAR=2
else
  DEV=cuda; DEVICES=cuda:0,cuda:0,cuda:0,cuda:0,cuda:0; T_STEPS=40; FOLDS=()
  EXTRA=(); TP=(--devices cuda --steps 40); GRU=(--device cuda --steps 50); PAR=4
fi

section() { echo; echo "=== $* ($(date +%T))"; printf '\n## %s\n\n' "$*" >> "$RES"; }
timed() {  # timed LIMIT LABEL CMD...: run CMD under a time limit; its output to the log and to
  # $WORK/last.txt; one line (exit status, wall time) to results.md
  local limit="$1" label="$2"; shift 2
  local t0; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$WORK/last.txt" 2>&1; local rc=$?
  cat "$WORK/last.txt"
  pkill -f "ser_cl.cli run" 2>/dev/null  # fold workers left by a timeout
  echo "- $label: exit $rc, wall $(( $(date +%s) - t0 )) s" | tee -a "$RES"
  return $rc
}
block() { echo '```' >> "$RES"; cat "$@" >> "$RES"; echo '```' >> "$RES"; }

section "environment"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none', 'cpus', __import__('os').cpu_count())"
} > "$WORK/env.txt" 2>&1; cat "$WORK/env.txt"; block "$WORK/env.txt"

section "prepare EmoDB"
timed 30 "prepare $SRC" "${CLI[@]}" prepare "$SRC" --out "$WORK/emodb" --quiet

section "CUDA tests (set_sync_debug_mode('error') around training steps; padding/GRU exactness)"
timed 90 "pytest" "$PY" -m pytest -q -p no:cacheprovider -rs tests/test_step_sync.py -k cuda
tail -4 "$WORK/last.txt" > "$WORK/pytest.txt"; block "$WORK/pytest.txt"

section "throughput, thesis encoder, bf16 (utterances/s; e2e = from the EmoDB store, loader included)"
timed 120 "train_throughput" "$PY" benchmarks/train_throughput.py "${TP[@]}" --data "$WORK/emodb"
block "$WORK/last.txt"
timed 45 "ce b32 e2e, host store" "$PY" benchmarks/train_throughput.py "${TP[@]}" --data "$WORK/emodb" \
  --losses ce --batch-sizes 32 --modes e2e --store-on-device no
tail -1 "$WORK/last.txt" > "$WORK/t.txt"; block "$WORK/t.txt"
timed 75 "ce b32 e2e x$PAR processes" "$PY" benchmarks/train_throughput.py "${TP[@]}" --data "$WORK/emodb" \
  --losses ce --batch-sizes 32 --modes e2e --parallel $PAR
tail -1 "$WORK/last.txt" > "$WORK/t.txt"; block "$WORK/t.txt"
timed 45 "gru variants" "$PY" benchmarks/gru_impl.py "${GRU[@]}"
block "$WORK/last.txt"

section "EmoDB, thesis recipe: CE baseline (thesis encoder, 50 epochs, 10 folds, $DEVICES)"
COMMON=(--set data.dir="$WORK/emodb" --set runs_dir="$WORK/runs" "${EXTRA[@]}" "${FOLDS[@]}" --no-report)
timed 150 "ce_baseline" "${CLI[@]}" run experiments/ce_baseline.toml --devices "$DEVICES" "${COMMON[@]}"
"${CLI[@]}" report "$WORK/runs/ce_baseline" --no-plots --out "$OUT_DIR/report_ce.md" && cat "$OUT_DIR/report_ce.md" >> "$RES"

section "EmoDB: self-supervised NT-Xent pretraining -> CE ft aug (thesis 4.4.4)"
timed 200 "selfsup_ntxent" "${CLI[@]}" run experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug \
  --devices "$DEVICES" "${COMMON[@]}"
"${CLI[@]}" report "$WORK/runs/selfsup_ntxent" --no-plots --out "$OUT_DIR/report_ssl.md" && cat "$OUT_DIR/report_ssl.md" >> "$RES"

section "training seconds per run (sum of the per-epoch seconds in metrics.jsonl)"
"$PY" - "$WORK/runs" <<'PY' > "$WORK/t.txt"
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
for info in sorted(runs.glob("*/*/run.json")):
    lines = [json.loads(l) for f in info.parent.glob("fold-*/metrics.jsonl") for l in f.read_text().splitlines()]
    print(f"- {info.parent.relative_to(runs)}: {len(lines)} epochs, {sum(l['seconds'] for l in lines):.1f} s")
PY
cat "$WORK/t.txt"; cat "$WORK/t.txt" >> "$RES"
tar czf "$OUT_DIR/runs.tgz" -C "$WORK" --exclude='*.pt' --exclude='embeddings' runs 2>/dev/null
echo; echo "done $(date +%T)"; sleep 1  # let tee flush the log
