#!/usr/bin/env bash
# Scale check of the CPU preset: a RAVDESS-size corpus (24 speakers x 60 clips = 1,440 clips of
# ~3.7 s, made by the synthetic generator: 12 sessions x 2 speakers, 15 clips per class and
# speaker) prepared with the preset's front-end, then the CPU preset's CE recipe over all 24
# leave-one-speaker-out folds, timed. Target: <= 60 minutes on 2 CPU cores.
#   bash benchmarks/scale_check.sh [N] [PRESET]   (default: 24 folds, --preset cpu; resumable)
#   bash benchmarks/scale_check.sh 3              (folds 1-3 only, and the 24-fold time they imply)
#   bash benchmarks/scale_check.sh 24 cpu-v1      (the first CPU preset, as measured in the README)
#   bash benchmarks/scale_check.sh 24 cpu-functionals   (the functionals recipe: ComParE 2016
#                                                       functionals store and its copies at speeds
#                                                       0.9 and 1.1, experiments/ce_baseline.toml)
# Two fold workers of one thread each (--devices cpu,cpu), as for EmoDB.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/ser-cl
PRESET="${2:-cpu}"
RAW=data/scale-raw; DATA=data/scale-mel64; RUNS="runs/scale-$PRESET"
EXP=experiments/ce_aug.toml; FEATURES=(--features mel --n-mels 64)
if [ "$PRESET" = cpu-functionals ]; then
    DATA=data/scale-compare; EXP=experiments/ce_baseline.toml
    FEATURES=(--features functionals --feature-set ComParE_2016)
fi
t0=$(date +%s)
[ -d "$RAW/Session12" ] || .venv/bin/python -c "
from ser_cl.data.corpora.synth import synthesize_corpus
print(synthesize_corpus('$RAW', per_speaker=15, seed=7, n_sessions=12, duration=(3.2, 4.2), n_dropped=0))"
[ -f "$DATA/prepare.json" ] || "$CLI" prepare "$RAW" --out "$DATA" "${FEATURES[@]}" --quiet
if [ "$PRESET" = cpu-functionals ]; then  # its CE also trains on copies at speeds 0.9 and 1.1
    for speed in 0.9 1.1; do
        [ -f "$DATA-sp$speed/prepare.json" ] || "$CLI" prepare "$RAW" --out "$DATA-sp$speed" "${FEATURES[@]}" \
            --speed "$speed" --quiet
    done
fi
echo "== corpus ready: $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
N="${1:-24}"
folds=(); for k in $(seq 1 "$N"); do folds+=(--fold "$k"); done
"$CLI" run "$EXP" --preset "$PRESET" --set data.dir="$DATA" --set data.protocol=speaker \
  --set runs_dir="$RUNS" --devices cpu,cpu --no-report "${folds[@]}"
secs=$(( $(date +%s) - t1 ))
echo "== $N of 24 folds of --preset $PRESET's CE recipe ($EXP): $secs s (24 folds at this rate: $(( secs * 24 / N / 60 )) min)"
"$CLI" report "$RUNS" --no-plots
