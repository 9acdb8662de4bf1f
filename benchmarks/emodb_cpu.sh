#!/usr/bin/env bash
# EmoDB on a 2-core CPU: the README's EmoDB tables (10-fold leave-one-speaker-out), each run
# timed, then the reports. Run from the repository root:
#   bash benchmarks/emodb_cpu.sh [thesis|cpu|cpu-v1|all] [EMODB_SOURCE_DIR]    (default: all, ../shared/data/emodb)
#   thesis: the thesis' recipes shrunk to the CPU (--preset cpu-thesis, 257-bin spectrograms):
#           CE, CE + SpecAugment, self-supervised NT-Xent -> CE ft aug     -> runs/emodb-cpu-thesis
#   cpu:    the CPU preset (--preset cpu, 64 log-mel bands, speaker-normalised): CE, and
#           self-supervised NT-Xent -> CE fine-tuning, two fold workers
#           of one thread each (--devices cpu,cpu)                         -> runs/emodb-cpu
#   cpu-v1: the same two runs with the first CPU preset (--preset cpu-v1, one process)
#                                                                          -> runs/emodb-cpu-v1
# SEED=N (cpu and cpu-v1): --set optim.seed=N, into runs/emodb-cpu-seedN (runs/emodb-cpu-v1-seedN).
# Resumable: finished folds are skipped; delete the runs folder to start afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-all}"
SRC="${2:-../shared/data/emodb}"
CLI=.venv/bin/ser-cl

source benchmarks/lib.sh  # timed

training_time() {  # the per-epoch seconds in metrics.jsonl, summed per variant
    .venv/bin/python - "$1" <<'PY'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
for info in sorted(runs.glob("*/*/run.json")):
    lines = [l for f in info.parent.glob("fold-*/metrics.jsonl") for l in f.read_text().splitlines()]
    secs = sum(json.loads(l)["seconds"] for l in lines)
    print(f"{info.parent.relative_to(runs)}: {len(lines)} epochs, {secs / 60:.1f} min of training epochs")
PY
}

frozen_vs_svm() {  # fine-tuning's head at the end of the frozen phase against the linear SVM on
    # the same frozen (pretrained) encoder, validation UA, mean over the folds
    .venv/bin/python - "$1/selfsup_ntxent" <<'PY'
import json, pathlib, statistics, sys
run = pathlib.Path(sys.argv[1])
head, svm = [], []
for fold in sorted((run / "ft_ce_aug").glob("fold-*")):
    frozen = [h for h in map(json.loads, (fold / "metrics.jsonl").read_text().splitlines()) if h["phase"] == "frozen"]
    head.append(100 * frozen[-1]["val_ua"])
    svm.append(100 * json.loads((run / "pretrain" / fold.name / "probe.json").read_text())["svm"]["val"]["ua"])
print(f"end of the frozen phase, val UA over {len(head)} folds: head {statistics.mean(head):.2f}, "
      f"linear SVM on the pretrained embeddings {statistics.mean(svm):.2f}")
PY
}

if [ "$WHICH" = thesis ] || [ "$WHICH" = all ]; then
    [ -f data/emodb/prepare.json ] || timed prepare "$CLI" prepare "$SRC" --out data/emodb
    RUNS=runs/emodb-cpu-thesis
    common=(--preset cpu-thesis --set data.dir=data/emodb --set runs_dir="$RUNS" --no-report)
    timed ce_baseline "$CLI" run experiments/ce_baseline.toml "${common[@]}"
    timed ce_aug "$CLI" run experiments/ce_aug.toml "${common[@]}"
    timed selfsup_ntxent "$CLI" run experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug "${common[@]}"
    "$CLI" report "$RUNS" --no-plots
    training_time "$RUNS"
    frozen_vs_svm "$RUNS"
fi
for PRESET in cpu cpu-v1; do
    [ "$WHICH" = "$PRESET" ] || [ "$WHICH" = all ] || continue
    [ -f data/emodb-mel64/prepare.json ] || timed prepare "$CLI" prepare "$SRC" --out data/emodb-mel64 \
        --features mel --n-mels 64
    if [ "$PRESET" = cpu ]; then RUNS=runs/emodb-cpu; workers=(--devices cpu,cpu); else RUNS=runs/emodb-cpu-v1; workers=(); fi
    seed=()
    if [ -n "${SEED:-}" ]; then RUNS="$RUNS-seed$SEED"; seed=(--set optim.seed="$SEED"); fi
    common=(--preset "$PRESET" --set data.dir=data/emodb-mel64 --set runs_dir="$RUNS" "${workers[@]}" "${seed[@]}" --no-report)
    timed ce "$CLI" run experiments/ce_baseline.toml "${common[@]}"
    timed selfsup_ntxent "$CLI" run experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug "${common[@]}"
    "$CLI" report "$RUNS" --no-plots
    training_time "$RUNS"
    frozen_vs_svm "$RUNS"
done
