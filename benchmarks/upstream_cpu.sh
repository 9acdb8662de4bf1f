#!/usr/bin/env bash
# A pre-trained upstream (Whisper base) beside the classical rows on two real corpora, on the CPU:
# for each corpus, the upstream's prepare time on the clips' own frames and in Whisper's padded 30 s
# window (--layer 4, one run each; the padded one on the first PADDED_FILES files of the corpus, 0 =
# all), the clip store with every layer (--layers all), the linear probe and the learned heads on
# its pooled frames (benchmarks/upstream_probe.py), the openSMILE ComParE 2016 + linear SVM baseline
# and the cpu-functionals CE recipe; then one table: corpus, row, UA mean +- spread over folds (and
# seeds), wall time.
# Run from the repository root (needs `pip install "ser-cl[ssl,baseline]"`):
#   bash benchmarks/upstream_cpu.sh [emovo|emodb|all] [what: all|prepare|probe|heads|classical]   (default: all all)
# UPSTREAM=DIR or a Hugging Face id in the local cache (default ../shared/upstreams/whisper-base);
# EMOVO_SRC / EMODB_SRC: the corpora (default ../shared/data/emovo, ../shared/data/emodb);
# SEEDS="0,1,2": the learned heads' seeds; PADDED_FILES (default 100): files timed in the 30 s window.
# Stores go to data/CORPUS-whisper{,-l4,-30s-l4}; the log of every step and the table to
# runs/upstream-cpu/. Resumable: a store that exists is not prepared again (its time is then the
# one logged before). EMOVO: no value was chosen on it.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-all}"
WHAT="${2:-all}"
CLI=.venv/bin/ser-cl
PY=.venv/bin/python
UPSTREAM="${UPSTREAM:-../shared/upstreams/whisper-base}"
SEEDS="${SEEDS:-0,1,2}"
PADDED_FILES="${PADDED_FILES:-100}"
OUT=runs/upstream-cpu
mkdir -p "$OUT"
source benchmarks/lib.sh  # timed
want() { [ "$WHAT" = all ] || [ "$WHAT" = "$1" ]; }

for CORPUS in emodb emovo; do
    [ "$WHICH" = "$CORPUS" ] || [ "$WHICH" = all ] || continue
    if [ "$CORPUS" = emovo ]; then SRC="${EMOVO_SRC:-../shared/data/emovo}"; else SRC="${EMODB_SRC:-../shared/data/emodb}"; fi
    LOG="$OUT/$CORPUS.log"
    ssl=(--features ssl --upstream "$UPSTREAM" --jobs 2 -q)
    if want prepare; then
        [ -f "data/$CORPUS-whisper-l4/prepare.json" ] || timed "$CORPUS prepare clip layer 4" "$CLI" prepare "$SRC" \
            --out "data/$CORPUS-whisper-l4" --layer 4 --whisper-window clip "${ssl[@]}" 2>&1 | tee -a "$LOG"
        if [ ! -f "data/$CORPUS-whisper-30s-l4/prepare.json" ]; then
            padded_src="$SRC"
            if [ "$PADDED_FILES" != 0 ]; then  # the first PADDED_FILES files, linked into a folder of their own
                padded_src="$OUT/$CORPUS-first$PADDED_FILES"
                rm -rf "$padded_src"; mkdir -p "$padded_src"
                find "$(cd "$SRC" && pwd)" -name '*.wav' | sort | head -n "$PADDED_FILES" | while read -r f; do
                    rel="${f#$(cd "$SRC" && pwd)/}"; mkdir -p "$padded_src/$(dirname "$rel")"; ln -s "$f" "$padded_src/$rel"
                done
                [ -d "data/$CORPUS-whisper-l4-first$PADDED_FILES" ] || timed "$CORPUS prepare clip layer 4, $PADDED_FILES files" \
                    "$CLI" prepare "$padded_src" --out "data/$CORPUS-whisper-l4-first$PADDED_FILES" --corpus "$CORPUS" \
                    --layer 4 --whisper-window clip "${ssl[@]}" 2>&1 | tee -a "$LOG"
            fi
            timed "$CORPUS prepare 30s window layer 4, files: ${PADDED_FILES/#0/all}" "$CLI" prepare "$padded_src" \
                --out "data/$CORPUS-whisper-30s-l4" --corpus "$CORPUS" --layer 4 --whisper-window 30s "${ssl[@]}" 2>&1 | tee -a "$LOG"
        fi
        [ -f "data/$CORPUS-whisper/prepare.json" ] || timed "$CORPUS prepare clip all layers" "$CLI" prepare "$SRC" \
            --out "data/$CORPUS-whisper" --layers all --whisper-window clip "${ssl[@]}" 2>&1 | tee -a "$LOG"
    fi
    if want probe; then
        for layers in 4 all; do
            timed "$CORPUS probe layers $layers" "$PY" benchmarks/upstream_probe.py "data/$CORPUS-whisper" \
                --layers "$layers" --head svm 2>&1 | tee -a "$LOG"
        done
    fi
    if want heads; then
        for head in "mlp --layers 4" "wsum --layers all" "supcon --layers all" "ntxent --layers all"; do
            # shellcheck disable=SC2086
            timed "$CORPUS head $head" "$PY" benchmarks/upstream_probe.py "data/$CORPUS-whisper" --head $head \
                --seeds "$SEEDS" 2>&1 | tee -a "$LOG"
        done
    fi
    if want classical; then
        FDATA="data/$CORPUS-compare"
        [ -f "$FDATA/prepare.json" ] || timed "$CORPUS prepare functionals" "$CLI" prepare "$SRC" --out "$FDATA" \
            --features functionals --feature-set ComParE_2016 -q 2>&1 | tee -a "$LOG"
        for speed in 0.9 1.1; do
            [ -f "$FDATA-sp$speed/prepare.json" ] || timed "$CORPUS prepare functionals, speed $speed" "$CLI" prepare \
                "$SRC" --out "$FDATA-sp$speed" --features functionals --feature-set ComParE_2016 --speed "$speed" -q \
                2>&1 | tee -a "$LOG"
        done
        common=(--set data.dir="$FDATA" --set runs_dir="$OUT/$CORPUS" --no-report)
        timed "$CORPUS opensmile_svm" "$CLI" run experiments/opensmile_svm.toml "${common[@]}" 2>&1 | tee -a "$LOG"
        timed "$CORPUS functionals ce" "$CLI" run experiments/ce_baseline.toml --preset cpu-functionals \
            --set experiment=functionals_ce "${common[@]}" 2>&1 | tee -a "$LOG"
        "$CLI" report "$OUT/$CORPUS" 2>&1 | tee -a "$LOG"
    fi
done

# the table: one line per timed step with its result (probe / head lines) and wall time
echo
echo "| corpus | step | result | wall s |"
echo "|---|---|---|---|"
for CORPUS in emodb emovo; do
    [ -f "$OUT/$CORPUS.log" ] || continue
    awk -v c="$CORPUS" '
        /^== .*: wall / { sub(/^== /, ""); n = index($0, ": wall "); step = substr($0, 1, n - 1);
                          w = substr($0, n + 7); sub(/ s$/, "", w); printf "| %s | %s | %s | %s |\n", c, step, res, w; res = "" ; next }
        /^== / { res = ""; next }
        / UA [0-9.]+ \+- / { m = match($0, /UA [0-9.]+ \+- [0-9.]+/); r = substr($0, RSTART + 3, RLENGTH - 3);
                             res = (res == "" ? r : res "; " r) }
        /^prepared [0-9]+ utterances/ { m = match($0, /in [0-9.]+ s/); res = "prepare " substr($0, RSTART + 3, RLENGTH - 3) }
    ' "$OUT/$CORPUS.log"
done
echo "(openSMILE and cpu-functionals UA: the ser-cl report printed above for each corpus)"
