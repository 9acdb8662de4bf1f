#!/usr/bin/env bash
# Pretraining pools on EmoDB (docs/results.md, "Pretraining pools on EmoDB (first CPU preset)"): self-supervised NT-Xent
# pretraining -> CE fine-tuning with the first CPU preset (--preset cpu-v1), 10-fold leave-one-speaker-out, where the
# pretraining reads
#   pool_synth:        1,440 clips of unlabeled synthetic speech only (no EmoDB): ONE pretraining
#                      run serves all 10 folds                          -> runs/emodb-pool/pool_synth
#   pool_emodb_synth:  each fold's EmoDB training speakers + the synthetic clips, half and half,
#                      860 clips an epoch (twice EmoDB's); per fold, the fold's validation and
#                      test speakers left out                           -> runs/emodb-pool/pool_emodb_synth
# The baseline row (pretraining on EmoDB's training speakers only, the same recipe) is
# `bash benchmarks/emodb_cpu.sh cpu-v1` (runs/emodb-cpu-v1/selfsup_ntxent).
#   bash benchmarks/emodb_pool.sh [EMODB_SOURCE_DIR]     (default ../shared/data/emodb; resumable)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="${1:-../shared/data/emodb}"
CLI=.venv/bin/ser-cl
EMODB=data/emodb-mel64; RAW=data/scale-raw; UNL=data/synth-unlabeled-mel64; RUNS=runs/emodb-pool
[ -f "$EMODB/prepare.json" ] || "$CLI" prepare "$SRC" --out "$EMODB" --features mel --n-mels 64 --quiet
# the scale check's synthetic corpus (24 speakers x 60 clips of ~3.7 s), read as unlabeled audio
[ -d "$RAW/Session12" ] || .venv/bin/python -c "
from ser_cl.data.corpora.synth import synthesize_corpus
print(synthesize_corpus('$RAW', per_speaker=15, seed=7, n_sessions=12, duration=(3.2, 4.2), n_dropped=0))"
[ -f "$UNL/prepare.json" ] || "$CLI" prepare "$RAW" --out "$UNL" --corpus unlabeled --speaker-level 0 \
  --features mel --n-mels 64 --quiet

source benchmarks/lib.sh  # timed
common=(experiments/pool_pretrain.toml --preset cpu-v1 --set data.dir="$EMODB" --set runs_dir="$RUNS" --no-report)
timed pool_synth "$CLI" run "${common[@]}" --set experiment=pool_synth \
  --set "data.pool=[\"$UNL\"]" --set "data.pool_weights=[]"
timed pool_emodb_synth "$CLI" run "${common[@]}" --set experiment=pool_emodb_synth \
  --set "data.pool=[\"$EMODB\", \"$UNL\"]" --set "data.pool_weights=[1.0, 1.0]" --set data.pool_epoch_size=860
"$CLI" report "$RUNS" --no-plots
# per fold, each pool against pretraining on EmoDB's training speakers only (when
# `bash benchmarks/emodb_cpu.sh cpu-v1` has run): the fine-tuned head's test and validation UA
.venv/bin/python - runs/emodb-cpu-v1/selfsup_ntxent/ft_ce_aug "$RUNS" <<'PY'
import json, pathlib, statistics, sys
base, runs = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def ua(run, part):
    return [100 * json.loads((run / f"fold-{k:02d}" / "metrics.json").read_text())[part]["ua"] for k in range(1, 11)]
if not (base / "fold-10" / "metrics.json").is_file():
    sys.exit(f"paired: {base} incomplete; run `bash benchmarks/emodb_cpu.sh cpu-v1` for the baseline")
for name in ("pool_synth", "pool_emodb_synth"):
    run = runs / name / "ft_ce_aug"
    for part in ("test", "val"):
        d = [a - b for a, b in zip(ua(run, part), ua(base, part))]
        print(f"paired {name} - emodb-only, {part} UA: mean {statistics.mean(d):+.2f}, "
              f"higher in {sum(x > 0 for x in d)}/10 folds; per fold {[round(x, 1) for x in d]}")
PY
