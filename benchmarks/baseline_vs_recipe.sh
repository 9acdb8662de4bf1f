#!/usr/bin/env bash
# The classical baseline's whole sweep (experiments/opensmile_svm.toml: eGeMAPS v02 / ComParE 2016
# x global / speaker normalisation) beside the recipe it is compared with (--preset cpu-functionals
# CE, experiments/ce_baseline.toml, with its 3 prepares: the ComParE 2016 functionals store and its
# speed copies 0.9 and 1.1), on the same EmoDB folds (1-2 by default), with wall times.
#   bash benchmarks/baseline_vs_recipe.sh            (folds 1 and 2)
#   FOLDS="1 2 3" bash benchmarks/baseline_vs_recipe.sh
# Corpus: EMODB_SRC (default ../shared/data/emodb); stores: DATA (default data/emodb-compare) and
# DATA-sp0.9, DATA-sp1.1, prepared here when absent (timed); when present, the wall time each
# prepare recorded in its prepare.json is counted instead. The baseline starts cold: its cached
# eGeMAPS functionals (DATA/cache/functionals) are removed first, so their computation counts
# (ComParE is the store itself and is read from it). Runs go to RUNS (default runs/baseline-vs-recipe,
# cleared first). Run it on an otherwise idle machine: both walls scale with the load.
set -euo pipefail
cd "$(dirname "$0")/.."
CLI=.venv/bin/ser-cl
SRC="${EMODB_SRC:-../shared/data/emodb}"
DATA="${DATA:-data/emodb-compare}"
RUNS="${RUNS:-runs/baseline-vs-recipe}"
folds=(); for k in ${FOLDS:-1 2}; do folds+=(--fold "$k"); done
rm -rf "$RUNS" "$DATA/cache/functionals"
now() { date +%s.%N; }
prep=0
for d in "$DATA" "$DATA-sp0.9" "$DATA-sp1.1"; do
    if [ -f "$d/prepare.json" ]; then
        w=$(.venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))['wall_seconds'])" "$d/prepare.json")
        echo "== prepare $d: present, its prepare.json records $w s"
    else
        speed=(); [ "$d" = "$DATA" ] || speed=(--speed "${d##*-sp}")
        t=$(now); "$CLI" prepare "$SRC" --out "$d" --features functionals --feature-set ComParE_2016 "${speed[@]}" --quiet
        w=$(echo "$(now) - $t" | bc); echo "== prepare $d: $w s"
    fi
    prep=$(echo "$prep + $w" | bc)
done
t=$(now)
"$CLI" run experiments/opensmile_svm.toml --set data.dir="$DATA" --set runs_dir="$RUNS/baseline" --no-report "${folds[@]}"
baseline=$(echo "$(now) - $t" | bc)
t=$(now)
"$CLI" run experiments/ce_baseline.toml --preset cpu-functionals --set data.dir="$DATA" --set runs_dir="$RUNS/recipe" \
    --no-report "${folds[@]}"
recipe=$(echo "$(now) - $t" | bc)
.venv/bin/python - "$RUNS" "$baseline" "$recipe" "$prep" <<'PY'
import json, sys
from pathlib import Path
runs, baseline, recipe, prep = Path(sys.argv[1]), *map(float, sys.argv[2:])
print(f"\n| row | test UA per fold | mean | wall |\n|---|---|---:|---:|")
for vdir in sorted(p.parent for p in runs.glob("*/*/*/run.json")):
    folds = sorted(vdir.glob("fold-*/metrics.json"))
    uas = [100 * json.loads(f.read_text())["test"]["ua"] for f in folds]
    if uas:
        print(f"| {vdir.parent.name}/{vdir.name} | {' / '.join(f'{u:.2f}' for u in uas)} | {sum(uas) / len(uas):.2f} | |")
print(f"| baseline sweep (4 variants) | | | {baseline:.0f} s |")
print(f"| recipe (cpu-functionals CE) | | | {recipe:.0f} s |")
print(f"| recipe + its 3 prepares | | | {recipe + prep:.0f} s |")
print(f"\nbaseline {'<=' if baseline <= recipe + prep else '>'} recipe with its prepares")
PY
