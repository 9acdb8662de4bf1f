#!/usr/bin/env bash
# Recipes beside the classical baseline on two real corpora, on the CPU: for each corpus, CE and
# self-supervised NT-Xent -> CE fine-tuning with --preset cpu (64 log-mel bands, speaker
# normalisation, two fold workers) and with --preset cpu-functionals (an MLP on ComParE 2016
# functionals, speaker normalisation), and openSMILE functionals + linear SVM (eGeMAPS v02 and
# ComParE 2016; global and speaker normalisation), leave-one-speaker-out, one report, wall times.
# Run from the repository root (needs `pip install "ser-cl[baseline]"` for the openSMILE rows):
#   bash benchmarks/corpora_cpu.sh [emovo|emodb|all] [what: all|baseline|ce|ssl|fce|fssl|ens]   (default: all all)
# (fce / fssl: CE / NT-Xent -> CE with --preset cpu-functionals on a functionals store; ens: after
# fce / fssl ran with seeds 0, 1 and 2 (SEED unset, SEED=1, SEED=2), their 3-seed ensembles
# `ser-cl ensemble`, written to runs/corpora-cpu/CORPUS/<experiment>/ensemble_3seeds, and the
# ensemble of both recipes' 3 seeds, runs/corpora-cpu/CORPUS/functionals_ensemble/ce3_ntxent3)
# Corpora: EMOVO from ../shared/data/emovo (EMOVO_SRC=...), EmoDB from ../shared/data/emodb (EMODB_SRC=...).
# SEED=N: --set optim.seed=N and runs/corpora-cpu-seedN. SETS="k=v k=v": more --set overrides for the
# CE and SSL runs, with TAG=NAME naming their runs folder (runs/corpora-cpu-NAME). Resumable:
# finished folds are skipped.
# EMOVO: no value of --preset cpu was chosen on it (the corpus for checking that a recipe carries over).
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-all}"
WHAT="${2:-all}"
CLI=.venv/bin/ser-cl
source benchmarks/lib.sh  # timed

RUNS=runs/corpora-cpu
seed=()
if [ -n "${SEED:-}" ]; then RUNS="$RUNS-seed$SEED"; seed=(--set optim.seed="$SEED"); fi
if [ -n "${TAG:-}" ]; then RUNS="$RUNS-$TAG"; fi
for kv in ${SETS:-}; do seed+=(--set "$kv"); done

for CORPUS in emovo emodb; do
    [ "$WHICH" = "$CORPUS" ] || [ "$WHICH" = all ] || continue
    if [ "$CORPUS" = emovo ]; then SRC="${EMOVO_SRC:-../shared/data/emovo}"; else SRC="${EMODB_SRC:-../shared/data/emodb}"; fi
    DATA="data/$CORPUS-mel64"
    [ -f "$DATA/prepare.json" ] || timed "$CORPUS prepare" "$CLI" prepare "$SRC" --out "$DATA" --features mel --n-mels 64 -q
    FDATA="data/$CORPUS-compare"
    if [ "$WHAT" = all ] || [ "$WHAT" = fce ] || [ "$WHAT" = fssl ]; then
        [ -f "$FDATA/prepare.json" ] || timed "$CORPUS prepare functionals" "$CLI" prepare "$SRC" --out "$FDATA" \
            --features functionals --feature-set ComParE_2016 -q
        for speed in 0.9 1.1; do  # the preset's CE also trains on copies at these speeds (data.train_copies)
            [ -f "$FDATA-sp$speed/prepare.json" ] || timed "$CORPUS prepare functionals, speed $speed" "$CLI" prepare \
                "$SRC" --out "$FDATA-sp$speed" --features functionals --feature-set ComParE_2016 --speed "$speed" -q
        done
    fi
    common=(--set data.dir="$DATA" --set runs_dir="$RUNS/$CORPUS" --no-report)
    fcommon=(--set data.dir="$FDATA" --set runs_dir="$RUNS/$CORPUS" --no-report)
    if [ "$WHAT" = all ] || [ "$WHAT" = baseline ]; then
        timed "$CORPUS opensmile_svm" "$CLI" run experiments/opensmile_svm.toml "${common[@]}"
    fi
    if [ "$WHAT" = all ] || [ "$WHAT" = ce ]; then
        timed "$CORPUS ce" "$CLI" run experiments/ce_baseline.toml --preset cpu --devices cpu,cpu "${seed[@]}" "${common[@]}"
    fi
    if [ "$WHAT" = all ] || [ "$WHAT" = ssl ]; then
        timed "$CORPUS selfsup_ntxent" "$CLI" run experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug \
            --preset cpu --devices cpu,cpu "${seed[@]}" "${common[@]}"
    fi
    if [ "$WHAT" = all ] || [ "$WHAT" = fce ]; then
        timed "$CORPUS functionals ce" "$CLI" run experiments/ce_baseline.toml --preset cpu-functionals \
            --set experiment=functionals_ce "${seed[@]}" "${fcommon[@]}"
    fi
    if [ "$WHAT" = all ] || [ "$WHAT" = fssl ]; then
        timed "$CORPUS functionals selfsup_ntxent" "$CLI" run experiments/selfsup_ntxent.toml --stage pretrain \
            --stage ft_ce_aug --preset cpu-functionals --set experiment=functionals_selfsup_ntxent "${seed[@]}" "${fcommon[@]}"
    fi
    if [ "$WHAT" = ens ]; then
        base=runs/corpora-cpu/$CORPUS
        all_members=()
        for exp in functionals_ce/train functionals_selfsup_ntxent/ft_ce_aug; do
            members=("$base/$exp" "runs/corpora-cpu-seed1/$CORPUS/$exp" "runs/corpora-cpu-seed2/$CORPUS/$exp")
            if [ -f "${members[1]}/run.json" ] && [ -f "${members[2]}/run.json" ]; then
                timed "$CORPUS ensemble of 3 seeds: $exp" "$CLI" ensemble "$base/${exp%%/*}/ensemble_3seeds" "${members[@]}"
                all_members+=("${members[@]}")
            else
                echo "== $CORPUS $exp: seeds 1 and 2 not run (SEED=1 / SEED=2 bash $0 $CORPUS fce|fssl); no ensemble"
            fi
        done
        if [ "${#all_members[@]}" -eq 6 ]; then  # both recipes, 3 seeds each
            timed "$CORPUS ensemble of CE and NT-Xent -> CE, 3 seeds each" "$CLI" ensemble \
                "$base/functionals_ensemble/ce3_ntxent3" "${all_members[@]}"
        fi
        RUNS=runs/corpora-cpu
    fi
    "$CLI" report "$RUNS/$CORPUS" --no-plots
done
