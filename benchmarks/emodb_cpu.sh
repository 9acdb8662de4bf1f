#!/usr/bin/env bash
# EmoDB on a CPU: the three CPU-preset runs of the README table (10-fold leave-one-speaker-out),
# each timed, then the report. Run from the repository root:
#   bash benchmarks/emodb_cpu.sh [EMODB_SOURCE_DIR]      (default ../shared/data/emodb)
# Resumable: finished folds are skipped; delete runs/emodb to start afresh.
set -euo pipefail
SRC="${1:-../shared/data/emodb}"
CLI=.venv/bin/ser-cl
RUNS=runs/emodb

timed() {  # timed LABEL CMD...: run CMD, print its wall time
    local label="$1"; shift
    local t0; t0=$(date +%s)
    echo "== $label: $*"
    "$@"
    echo "== $label: wall $(( $(date +%s) - t0 )) s"
}

[ -f data/emodb/features.npy ] || timed prepare "$CLI" prepare "$SRC" --out data/emodb
common=(--preset cpu --set data.dir=data/emodb --set runs_dir="$RUNS")
timed ce_baseline "$CLI" run experiments/ce_baseline.toml "${common[@]}"
timed ce_aug "$CLI" run experiments/ce_aug.toml "${common[@]}"
timed selfsup_ntxent "$CLI" run experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug "${common[@]}"
"$CLI" report "$RUNS"
# training time of each run (also after a resumed run): the per-epoch seconds in metrics.jsonl
.venv/bin/python - "$RUNS" <<'PY'
import json, pathlib, sys
runs = pathlib.Path(sys.argv[1])
for info in sorted(runs.glob("*/*/run.json")):
    lines = [l for f in info.parent.glob("fold-*/metrics.jsonl") for l in f.read_text().splitlines()]
    secs = sum(json.loads(l)["seconds"] for l in lines)
    print(f"{info.parent.relative_to(runs)}: {len(lines)} epochs, {secs / 60:.1f} min of training epochs")
PY
