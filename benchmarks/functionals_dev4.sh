#!/usr/bin/env bash
# Choosing the functionals recipe for corpora with few training speakers, on EmoDB only.
#
# EMOVO's leave-one-speaker-out folds train on 4 speakers. This script builds the same regime on
# EmoDB (protocol speaker_groups, 2 folds: 5 test speakers, 1 validation speaker, 4 training
# speakers) and runs each candidate change to --preset cpu-functionals with seeds 0, 1, 2, then
# the 3-seed ensemble of each candidate (`ser-cl ensemble`). EmoDB is the development corpus
# (docs/selection.md, rule 1): every figure here is a development figure, and no EMOVO label is read.
#
#   bash benchmarks/functionals_dev4.sh [CANDIDATE ...]     (default: all candidates below)
#
# Needs data/emodb-compare (bash benchmarks/corpora_cpu.sh emodb fce prepares it). Resumable.
# Prints, per candidate: mean val and test UA over (2 folds x 3 seeds), the spread over seeds of
# the fold means, and the ensemble's test UA.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/lib.sh
CLI="${CLI:-.venv/bin/ser-cl}"
DATA="${DATA:-data/emodb-compare}"
RUNS="${RUNS:-runs/dev4}"
# candidates: changes to the preset as it is now (its CE trains without a validation speaker)
declare -A SETS=(
    [base]=""
    [val1]="data.val_speakers=1"
    [keep-best]="data.val_speakers=1 optim.keep=best"
    [lr3e-4]="optim.lr=3e-4"
    [lr1e-4]="optim.lr=1e-4"
    [wd0.1]="optim.weight_decay=0.1"
    [indrop0.5]="model.input_dropout=0.5"
    [hidden64]="model.mlp_hidden=64"
    [smooth0.3]="loss.label_smoothing=0.3"
    [refit]="data.val_speakers=1 optim.refit_head=true"
    # no speed-perturbed copies (0.9 and 1.1) of each fold's training utterances (the preset's CE has them)
    [nocopies]="data.train_copies=[]"
    # ssl*: self-supervised NT-Xent -> CE fine-tuning (the preset's), and without the copies
    [ssl]=""
    [ssl-nocopies]="kind.finetune.data.train_copies=[]"
    # the lr schedule of CE without validation (by epoch): lr / 10 every 9 epochs (what the plateau
    # schedule did when no epoch could improve), every 20 epochs, a half cosine, a constant lr
    [step9]="kind.train.optim.schedule=step kind.train.optim.step_epochs=9"
    [step20]="kind.train.optim.schedule=step kind.train.optim.step_epochs=20"
    [cosine]="kind.train.optim.schedule=cosine"
    [constant]="kind.train.optim.schedule=step kind.train.optim.step_epochs=1000"
)
ORDER=(base nocopies val1 keep-best lr3e-4 lr1e-4 wd0.1 indrop0.5 hidden64 smooth0.3 refit ssl ssl-nocopies)
[ $# -gt 0 ] && ORDER=("$@")
[ -f "$DATA/prepare.json" ] || { echo "$DATA: not prepared; run: bash benchmarks/corpora_cpu.sh emodb fce" >&2; exit 2; }
if true; then  # the copies' stores (the preset's CE trains on them), from the audio $DATA was prepared from
    source_dir=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["source"])' "$DATA/prepare.json")
    for speed in 0.9 1.1; do
        [ -f "$DATA-sp$speed/prepare.json" ] || timed "prepare --speed $speed" "$CLI" prepare "$source_dir" \
            -o "$DATA-sp$speed" --features functionals --feature-set ComParE_2016 --speed "$speed" -q
    done
fi
variant_of() { if [[ "$1" == ssl* ]]; then echo ft_ce_aug; else echo train; fi; }
for name in "${ORDER[@]}"; do
    recipe=(experiments/ce_baseline.toml)
    [[ "$name" == ssl* ]] && recipe=(experiments/selfsup_ntxent.toml --stage pretrain --stage ft_ce_aug)
    extra=()
    for kv in ${SETS[$name]}; do extra+=(--set "$kv"); done
    for seed in 0 1 2; do
        log="$RUNS/logs/${name}_seed$seed.log"
        mkdir -p "$RUNS/logs"
        timed "dev4 $name seed $seed" "$CLI" run "${recipe[@]}" --preset cpu-functionals \
            --set data.dir="$DATA" --set data.protocol=speaker_groups --set data.n_folds=2 \
            --set experiment="dev4_$name" --set runs_dir="$RUNS/seed$seed" --set optim.seed="$seed" \
            --set probe=false --no-report --devices cpu,cpu "${extra[@]}" > "$log" 2>&1 \
            || { tail -5 "$log"; exit 1; }
    done
    "$CLI" ensemble "$RUNS/ensembles/dev4_$name" "$RUNS"/seed{0,1,2}/"dev4_$name/$(variant_of "$name")" --device cpu > /dev/null
done
# the classical baseline on the same folds: ComParE 2016 + linear SVM, speaker-normalised
BASELINE_DATA="${BASELINE_DATA:-data/emodb-mel64}"  # any store of EmoDB: the baseline reads the audio
[ -f "$BASELINE_DATA/prepare.json" ] || BASELINE_DATA="$DATA"
"$CLI" run experiments/opensmile_svm.toml --set data.dir="$BASELINE_DATA" --set data.protocol=speaker_groups \
    --set data.n_folds=2 --set runs_dir="$RUNS/baseline" --set "sweep={}" --set baseline.feature_set=ComParE_2016 \
    --set baseline.norm=speaker --no-report > "$RUNS/logs/baseline.log" 2>&1 || { tail -5 "$RUNS/logs/baseline.log"; exit 1; }
.venv/bin/python - "$RUNS" "${ORDER[@]}" <<'PY'
import json, sys
import numpy as np
runs, names = sys.argv[1], sys.argv[2:]
def fold_uas(path, part):  # nan: no validation speakers (data.val_speakers = 0)
    blocks = [json.load(open(f"{path}/fold-0{k}/metrics.json"))[part] for k in (1, 2)]
    return [block["ua"] * 100 if block else float("nan") for block in blocks]
print("| candidate | val UA | test UA | test UA per seed (fold mean) | per fold (seed mean) | ensemble test UA |")
print("|---|---:|---:|---|---|---:|")
for name in names:
    variant = "ft_ce_aug" if name.startswith("ssl") else "train"
    seeds = [f"{runs}/seed{s}/dev4_{name}/{variant}" for s in (0, 1, 2)]
    val = np.array([fold_uas(p, "val") for p in seeds]); test = np.array([fold_uas(p, "test") for p in seeds])
    ens = fold_uas(f"{runs}/ensembles/dev4_{name}", "test")
    print(f"| {name} | {val.mean():.2f} | {test.mean():.2f} +- {test.mean(1).std():.2f} | "
          + " / ".join(f"{v:.2f}" for v in test.mean(1)) + " | " + " / ".join(f"{v:.2f}" for v in test.mean(0))
          + f" | {np.mean(ens):.2f} |")
import glob
for path in glob.glob(f"{runs}/baseline/opensmile_svm/*/run.json"):
    base = path.rsplit("/", 1)[0]
    val, test = fold_uas(base, "val"), fold_uas(base, "test")
    print(f"| ComParE + SVM, speaker (baseline) | {np.mean(val):.2f} | {np.mean(test):.2f} | - | "
          + " / ".join(f"{v:.2f}" for v in test) + " | - |")
PY
