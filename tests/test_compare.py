"""Seeds and significance: seed sweeps (expand), seed groups in the report, and
`ser-cl report --compare A B` (paired per-fold differences, Wilcoxon signed-rank p).

The numbers are checked against independent references: numpy on hand-made numbers for the seed
groups, the metrics.json values written here for the per-fold differences, and a brute-force
enumeration of every sign flip for the exact signed-rank p-value.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.eval.compare import CompareError, compare_runs, render_comparison
from ser_cl.eval.signed_rank import wilcoxon_test
from ser_cl.eval.report import build_seed_table, build_table, collect_runs, render
from ser_cl.experiment import expand, load_experiment
from test_report import CLASSES, block, write_json, write_metrics

DATA = "/data/iemocap"


def make_run(root: Path, experiment: str, variant: str, test_uas, *, val_uas=None, sweep=None, folds=None,
             data_dir=DATA, protocol="session5", stage="train", head=True, split=True) -> Path:
    """A head-scored variant with these test UAs (fractions) per fold; None: the fold is missing.
    ``split``: each fold's split.json (fold-k tests utterances tk-0, tk-1 and trains on speakers
    s1..s4; a callable(name) -> dict gives its own)."""
    names = folds or [f"fold-{k:02d}" for k in range(1, len(test_uas) + 1)]
    path = root / experiment / variant
    run = {"experiment": experiment, "variant": variant, "stage": stage, "protocol": protocol,
           "folds": names, "sweep": sweep or {}, "thesis": {}, "classes": CLASSES, "head": head}
    if data_dir is not None:
        run["data_dir"] = data_dir
    write_json(path / "run.json", run)
    val_uas = val_uas if val_uas is not None else [0.5] * len(test_uas)
    for name, test, val in zip(names, test_uas, val_uas):
        if test is not None:
            write_metrics(path / name, block(val), block(test))
            if split:
                write_json(path / name / "split.json", split(name) if callable(split) else default_split(name))
    return path


def default_split(name, **changes):
    k = name.split("-")[1]
    return dict({"fold": name, "test": [f"t{k}-0", f"t{k}-1"], "val": [], "train": [f"r{k}-0"],
                 "train_speakers": ["s1", "s2", "s3", "s4"], "test_speakers": [f"x{k}"], "val_speakers": []}, **changes)


def invoke(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


# --------------------------------------------------------------------------- seed sweeps


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_a_seed_sweep_makes_one_variant_per_seed(tmp_path):
    (stage,) = load_experiment(write_toml(tmp_path, 'stage = "train"\n[sweep]\n"optim.seed" = [0, 1, 2]\n'))
    variants = expand(stage)
    assert [v.name for v in variants] == ["train_seed=0", "train_seed=1", "train_seed=2"]
    assert [v.config.optim.seed for v in variants] == [0, 1, 2]


SSL = '''
[[stages]]
name = "pretrain"
stage = "pretrain"
loss = { name = "selfsup_ntxent" }
augment = { enabled = true, multiview = true }
sweep = { "optim.seed" = [0, 1, 2] }
[[stages]]
name = "ft"
stage = "finetune"
loss = { name = "ce" }
finetune = { from = "pretrain" }
'''


def test_a_finetune_of_a_seed_sweep_runs_with_its_sources_seed(tmp_path):
    pre, ft = load_experiment(write_toml(tmp_path, SSL))
    parents = expand(pre)
    children = expand(ft, parents)
    assert [(v.name, v.source, v.config.optim.seed) for v in children] == [
        ("ft_seed=0", "pretrain_seed=0", 0), ("ft_seed=1", "pretrain_seed=1", 1), ("ft_seed=2", "pretrain_seed=2", 2)]


def test_a_key_swept_by_a_stage_and_its_source_is_paired_not_crossed(tmp_path):
    """Before: 3 x 3 fine-tunings, three of each name (ft_seed=0 <- every pretraining)."""
    pre, ft = load_experiment(write_toml(tmp_path, SSL + 'sweep = { "optim.seed" = [0, 1, 2], "optim.lr" = [1e-3, 1e-4] }\n'))
    children = expand(ft, expand(pre))
    names = [v.name for v in children]
    assert len(names) == len(set(names)) == 6
    assert [(v.source, v.config.optim.seed) for v in children[:2]] == [("pretrain_seed=0", 0)] * 2
    assert all(v.name.startswith(f"ft_seed={v.config.optim.seed}_lr=") for v in children)


# --------------------------------------------------------------------------- seed groups in the report


# hand-made test UAs: 3 seeds x 4 folds of "ce", one seed less for the worse "ce" of lr 1e-4
SEEDS = {0: [0.50, 0.60, 0.55, 0.45], 1: [0.52, 0.58, 0.61, 0.49], 2: [0.40, 0.70, 0.50, 0.44]}


@pytest.fixture
def seeded(tmp_path):
    root = tmp_path / "runs"
    for seed, uas in SEEDS.items():
        make_run(root, "ce", f"train_lr=0.001_seed={seed}", uas, val_uas=[0.6] * 4,
                 sweep={"optim.lr": 1e-3, "optim.seed": seed})
    for seed in (0, 1):
        make_run(root, "ce", f"train_lr=0.0001_seed={seed}", [0.3] * 4, val_uas=[0.9 - 0.1 * seed] * 4,
                 sweep={"optim.lr": 1e-4, "optim.seed": seed})
    make_run(root, "base", "train", [0.40, 0.50, 0.45, 0.35])
    return root


def test_seed_groups_give_the_mean_and_spread_of_the_seed_means(seeded):
    rows = build_table(collect_runs(seeded))
    groups = {g["variant"]: g for g in build_seed_table(rows)}
    assert set(groups) == {"train_lr=0.001", "train_lr=0.0001"}
    group = groups["train_lr=0.001"]
    seed_means = np.array([np.mean(SEEDS[s]) for s in (0, 1, 2)]) * 100
    assert group["seeds"] == [0, 1, 2] and group["n_seeds"] == 3
    assert group["test_ua_seed_means"] == pytest.approx(list(seed_means))
    assert group["test_ua_mean"] == pytest.approx(np.mean(seed_means))
    assert group["test_ua_std"] == pytest.approx(np.std(seed_means, ddof=0))
    assert group["n_folds"] == [4, 4, 4] and group["complete"] and group["sweep"] == {"optim.lr": 1e-3}
    # the per-seed rows stay, each with its own fold mean
    by_name = {row["variant"]: row for row in rows}
    assert by_name["train_lr=0.001_seed=2"]["test_ua_mean"] == pytest.approx(np.mean(SEEDS[2]) * 100)
    assert by_name["train_lr=0.001_seed=2"]["seed_group"] == "train_lr=0.001"
    # best: the group with the higher mean over seeds of val UA (0.85 > 0.6), never a single seed
    assert groups["train_lr=0.0001"]["best"] and not group["best"]
    assert groups["train_lr=0.0001"]["val_ua_mean"] == pytest.approx(85.0)
    assert not any(row["best"] for row in rows)
    assert "seed_group" not in by_name["train"]  # a variant without a seed sweep is left as it was


def test_seed_table_in_markdown_csv_and_json(seeded):
    rows = build_table(collect_runs(seeded))
    md = render(rows, "md")
    assert md.count("Seeds (`optim.seed`)") == 1
    line = next(l for l in md.splitlines() if l.startswith("| train_lr=0.001 "))
    seed_means = np.array([np.mean(SEEDS[s]) for s in (0, 1, 2)]) * 100
    assert f"{np.mean(seed_means):.2f} +- {np.std(seed_means):.2f}" in line
    assert "3 (0, 1, 2)" in line and ", ".join(f"{m:.2f}" for m in seed_means) in line
    assert any(l.startswith("| train_lr=0.0001 *") for l in md.splitlines())
    parsed = list(csv.DictReader(io.StringIO(render(rows, "csv"))))
    assert len(parsed) == len(rows) + 2
    last = next(r for r in parsed[-2:] if r["variant"] == "train_lr=0.001")
    assert (last["variant"], last["seeds"], last["n_seeds"], last["sweep"]) == ("train_lr=0.001", "0;1;2", "3",
                                                                                "optim.lr=0.001")
    assert float(last["test_ua_std"]) == pytest.approx(np.std(seed_means), abs=1e-4)
    loaded = json.loads(render(rows, "json"))
    assert sorted(r.get("n_seeds") for r in loaded[-2:]) == [2, 3]


def test_without_a_seed_sweep_the_report_is_unchanged(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "ce", "train_lr=0.001", [0.5, 0.6], sweep={"optim.lr": 1e-3})
    make_run(root, "ce", "train_lr=0.01", [0.5, 0.7], sweep={"optim.lr": 1e-2})
    rows = build_table(collect_runs(root))
    assert build_seed_table(rows) == [] and all("seed_group" not in row for row in rows)
    assert "Seeds" not in render(rows, "md")
    assert json.loads(render(rows, "json")) == json.loads(json.dumps(rows))
    assert "seeds" not in render(rows, "csv").splitlines()[0]


# --------------------------------------------------------------------------- --compare


def brute_force_p(diffs) -> float:
    """Two-sided exact p of the signed-rank statistic: every one of the 2^n sign flips (no zeros)."""
    d = np.asarray(diffs, dtype=float)
    a = np.abs(d)
    ranks = np.array([np.sum(a < x) + (np.sum(a == x) + 1) / 2 for x in a])  # tied ranks averaged
    observed = ranks[d > 0].sum()
    stats = np.array([sum(r for r, s in zip(ranks, signs) if s)
                      for signs in itertools.product((0, 1), repeat=len(d))])
    tail = min(np.mean(stats <= observed), np.mean(stats >= observed))
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("seed", range(6))
def test_the_p_value_is_the_exact_sign_flip_one(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 12))
    magnitudes = rng.permutation(np.arange(1, n + 1)) * 0.37  # distinct: no ties
    diffs = magnitudes * rng.choice([-1, 1], size=n, p=[0.3, 0.7])
    statistic, p, n_nonzero, min_p, how = wilcoxon_test(diffs)
    assert n_nonzero == n and how == "exact"
    assert p == pytest.approx(brute_force_p(diffs), abs=1e-12)
    assert min_p == pytest.approx(2 / 2 ** n)


def test_the_label_names_the_method_that_gave_p_with_zeros_and_with_ties():
    # zeros only: dropped, then the exact test (scipy 1.9-1.12's "auto" would have approximated)
    with_zeros = [1.5, -0.5, 2.5, 0.0, 3.5, 4.5, 0.0]
    statistic, p, n, _, how = wilcoxon_test(with_zeros)
    assert n == 5 and how == "exact; 2 zero differences dropped"
    assert p == pytest.approx(brute_force_p([x for x in with_zeros if x]), abs=1e-12)
    # ties among the non-zero differences: still exact, over every sign flip of the average ranks
    tied = [1.0, 1.0, -2.0, 3.0, 3.0, 4.0, 0.0]
    statistic, p, n, _, how = wilcoxon_test(tied)
    assert n == 6 and how == "exact over the 2^n sign flips (tied ranks averaged); 1 zero difference dropped"
    assert p == pytest.approx(brute_force_p([x for x in tied if x]), abs=1e-12)
    assert statistic == 3.0  # average ranks 1.5 1.5 3 4.5 4.5 6: W- = 3 (the -2), W+ = 18
    # more than 50: the normal approximation, said so, against the formula by hand
    rng = np.random.default_rng(0)
    many = rng.permutation(np.arange(1, 61)) * rng.choice([-1, 1], size=60, p=[0.4, 0.6])
    statistic, p, n, _, how = wilcoxon_test(many)
    assert n == 60 and how == "normal approximation (n > 50)"
    w_plus = np.abs(many)[many > 0].sum()  # the ranks are the magnitudes 1..60
    z = (w_plus - 60 * 61 / 4) / np.sqrt(60 * 61 * 121 / 24)
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)


def test_compare_pairs_the_folds_and_gives_the_differences_of_the_metrics_json_values(tmp_path):
    root = tmp_path / "runs"
    a_uas = [0.61, 0.55, 0.70, 0.48, 0.66, 0.59, 0.52, 0.71]
    b_uas = [0.50, 0.56, 0.62, 0.44, 0.60, 0.59, 0.40, 0.64]  # fold-06: a tie
    make_run(root, "supcon", "ft_ce", a_uas, stage="finetune")
    make_run(root, "ce_baseline", "train", b_uas)
    c = compare_runs(root, "supcon/ft_ce", "ce_baseline/train")
    assert c.folds == [f"fold-{k:02d}" for k in range(1, 9)]
    assert c.a_values == pytest.approx([x * 100 for x in a_uas])
    assert c.b_values == pytest.approx([x * 100 for x in b_uas])
    expected = [round((x - y) * 100, 6) for x, y in zip(a_uas, b_uas)]
    assert [round(d, 6) for d in c.diffs] == expected
    assert c.mean_diff == pytest.approx(np.mean(expected))
    assert (c.wins, c.losses, c.ties, c.n_nonzero) == (6, 1, 1, 7)
    nonzero = [d for d in expected if d != 0]
    assert len({abs(d) for d in nonzero}) == len(nonzero)  # no ties among the rest: exact p, zero dropped
    assert c.p_value == pytest.approx(brute_force_p(nonzero), abs=1e-9)
    md = render_comparison(c)
    assert "| fold-02 |" in md and "-1.00 |" in md.splitlines()[next(i for i, l in enumerate(md.splitlines())
                                                                     if l.startswith("| fold-02"))]
    assert f"p = {c.p_value:.4g}" in md and "A better on 6 folds, B better on 1, ties 1" in md
    # the bare variant names work when unambiguous; the json holds the same numbers
    assert compare_runs(root, "ft_ce", "train").diffs == c.diffs
    assert json.loads(render_comparison(c, "json"))["p_value"] == pytest.approx(c.p_value)


def test_compare_only_pairs_folds_both_have(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "x", "a", [0.6, None, 0.7, 0.8, 0.9, 0.5])
    make_run(root, "x", "b", [0.5, 0.5, 0.6, None, 0.7, 0.45])
    c = compare_runs(root, "x/a", "x/b")
    assert c.folds == ["fold-01", "fold-03", "fold-05", "fold-06"]
    assert c.left_out == ["fold-02: not complete in x/a", "fold-04: not complete in x/b"]
    assert c.n_nonzero == 4 and c.p_value == pytest.approx(2 / 2 ** 4)  # all A better: the smallest p
    assert any("2/2^4 = 0.125" in note and "p < 0.05" in note for note in c.notes)


def test_compare_averages_a_seed_group_over_its_seeds_per_fold(seeded):
    # fold-04 of seed 1 is not complete: that fold is left out, not averaged over fewer seeds
    (seeded / "ce" / "train_lr=0.001_seed=1" / "fold-04" / "metrics.json").unlink()
    c = compare_runs(seeded, "ce/train_lr=0.001", "base/train")
    assert c.folds == ["fold-01", "fold-02", "fold-03"]
    means = [np.mean([SEEDS[s][k] for s in (0, 1, 2)]) * 100 for k in range(3)]
    assert c.a_values == pytest.approx(means)
    assert c.diffs == pytest.approx([m - b * 100 for m, b in zip(means, [0.40, 0.50, 0.45])])
    assert c.left_out == ["fold-04: not complete in seed=1"]
    assert "seeds 0, 1, 2" in c.a
    # one seed of the group is a variant of its own too
    assert compare_runs(seeded, "ce/train_lr=0.001_seed=2", "base/train").a_values == pytest.approx(
        [x * 100 for x in SEEDS[2]])


def test_all_zero_differences_give_p_1_without_crashing(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "x", "a", [0.6, 0.5, 0.7])
    make_run(root, "x", "b", [0.6, 0.5, 0.7])
    c = compare_runs(root, "a", "b")
    assert (c.p_value, c.statistic, c.n_nonzero, c.ties) == (1.0, None, 0, 3)
    assert any("every difference is zero" in note for note in c.notes)
    assert "p = 1" in render_comparison(c)


def test_compare_errors(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "e1", "train", [0.6, 0.5])
    make_run(root, "e2", "train", [0.5, 0.4])
    make_run(root, "e3", "other_data", [0.5, 0.4], data_dir="/data/emodb",
             split=lambda n: default_split(n, test=["emodb_u1"]))
    make_run(root, "e4", "other_protocol", [0.5, 0.4], protocol="session10")
    make_run(root, "e5", "no_test", [0.5, 0.4], folds=["fold-08", "fold-09"])
    with pytest.raises(CompareError, match=r"^no variant 'nope' under .*; variants: e1/train, e2/train, "):
        compare_runs(root, "nope", "e1/train")
    with pytest.raises(CompareError, match=r"^'train' is ambiguous: e1/train, e2/train; give experiment/variant$"):
        compare_runs(root, "train", "e3/other_data")
    with pytest.raises(CompareError, match=r"^fold-01 tests other utterances in e1/train \(2\) than in e3/other_data \(1; 0 shared\)"):
        compare_runs(root, "e1/train", "other_data")
    with pytest.raises(CompareError, match=r"not run on the same data \(protocol session5 vs session10\)"):
        compare_runs(root, "e1/train", "other_protocol")
    with pytest.raises(CompareError, match="no fold has test UA in both"):
        compare_runs(root, "e1/train", "no_test")
    with pytest.raises(CompareError, match="both e1/train"):
        compare_runs(root, "e1/train", "e1/train")
    with pytest.raises(CompareError, match="unknown metric"):
        compare_runs(root, "e1/train", "e2/train", metric="f1")
    for error in (CompareError("x"),):
        assert "\n" not in str(error)


def test_two_stores_of_one_corpus_pair_when_every_fold_tests_the_same_utterances(tmp_path):
    root = tmp_path / "runs"
    mel = make_run(root, "mel", "train", [0.6, 0.5, 0.7], data_dir="data/emovo-mel64")
    func = make_run(root, "func", "train", [0.5, 0.55, 0.4], data_dir="data/emovo-compare")
    other = make_run(root, "other", "train", [0.5, 0.55, 0.4], data_dir="data/emovo-compare")
    for k in (1, 2, 3):
        same = {"fold": f"fold-0{k}", "test": [f"u{k}a", f"u{k}b"], "val": [], "train": []}
        write_json(mel / f"fold-0{k}" / "split.json", same)
        write_json(func / f"fold-0{k}" / "split.json", dict(same, test=list(reversed(same["test"]))))
        write_json(other / f"fold-0{k}" / "split.json", dict(same, test=[f"u{k}a"] if k == 3 else same["test"]))
    c = compare_runs(root, "mel/train", "func/train")
    assert c.diffs == pytest.approx([10.0, -5.0, 30.0]) and c.a_values == pytest.approx([60.0, 50.0, 70.0])
    assert any("every paired fold tests the same utterances" in note for note in c.notes)
    with pytest.raises(CompareError, match=r"^fold-03 tests other utterances in mel/train \(2\) than in other/train"):
        compare_runs(root, "mel/train", "other/train")
    (func / "fold-02" / "split.json").unlink()
    with pytest.raises(CompareError, match="func/train/fold-02/split.json is missing or unreadable"):
        compare_runs(root, "mel/train", "func/train")  # unknown test set: not paired


def test_folds_that_test_other_utterances_are_refused_in_one_line(tmp_path):
    """One store, one protocol: speaker_groups with 5 and with 10 folds pair no fold (the issue's case)."""
    root = tmp_path / "runs"
    speakers = [f"sp{i}" for i in range(10)]

    def groups(n):  # fold k tests speakers k-1, k-1+n, ... (speaker_groups-like)
        return lambda name: default_split(name, test=[f"{s}_u{j}" for s in speakers[int(name[-2:]) - 1::n] for j in (0, 1)])

    make_run(root, "e", "k5", [0.6, 0.5, 0.7, 0.65, 0.61], protocol="speaker_groups", split=groups(5))
    make_run(root, "e", "k10", [0.5, 0.4, 0.6, 0.55, 0.6, 0.5, 0.4, 0.6, 0.55, 0.6], protocol="speaker_groups",
             split=groups(10))
    with pytest.raises(CompareError, match=r"^fold-01 tests other utterances in e/k5 \(4\) than in e/k10 \(2; 2 shared\): "
                                           "their folds cannot be paired") as err:
        compare_runs(root, "e/k5", "e/k10")
    assert "\n" not in str(err.value)
    res = invoke("report", root, "--compare", "e/k5", "e/k10", code=2)
    assert res.output.startswith("error: fold-01 tests other utterances") and len(res.output.strip().splitlines()) == 1
    # a fold without split.json cannot be checked: refused, naming the file
    make_run(root, "e", "nosplit", [0.5] * 5, protocol="speaker_groups", split=False)
    with pytest.raises(CompareError, match=r"nosplit/fold-01/split.json is missing or unreadable"):
        compare_runs(root, "e/k5", "e/nosplit")


def test_a_fold_one_side_never_had_is_not_called_incomplete(tmp_path):
    root = tmp_path / "runs"  # two fold files whose first 3 folds are the same
    make_run(root, "e", "three", [0.6, 0.5, 0.7], protocol="file")
    make_run(root, "e", "four", [0.5, 0.4, 0.6, 0.55], protocol="file")
    make_run(root, "e", "four_partial", [0.5, None, 0.6, 0.55], protocol="file")
    c = compare_runs(root, "e/three", "e/four")
    assert c.folds == ["fold-01", "fold-02", "fold-03"]
    assert c.left_out == ["fold-04: not a fold of e/three (its run has 3 folds)"]
    c = compare_runs(root, "e/four_partial", "e/four")
    assert c.left_out == ["fold-02: not complete in e/four_partial"]


def test_compare_says_when_the_rows_trained_on_other_speakers_or_copies(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "e", "five", [0.6, 0.5, 0.7], split=lambda n: default_split(n, train_speakers=["s1", "s2", "s3", "s4", "s5"]))
    make_run(root, "e", "four", [0.5, 0.4, 0.6])
    make_run(root, "e", "four_copies", [0.5, 0.4, 0.6], split=lambda n: default_split(
        n, train_copies=["x-sp0.9:r-0", "x-sp1.1:r-0"]))
    c = compare_runs(root, "e/five", "e/four")
    [note] = [n for n in c.notes if "trained on different" in n]
    assert note.startswith("A and B were trained on different speakers in 3 of the 3 paired folds "
                           "(e.g. fold-01: 5 vs 4 speakers; only in A: s5)")
    c = compare_runs(root, "e/four_copies", "e/four")
    assert not [n for n in c.notes if "different speakers" in n]
    [note] = [n for n in c.notes if "copies" in n]
    assert note.startswith("A trained on copies from x-sp0.9, x-sp1.1 (split.json train_copies), B on no copies")
    assert f"note: {note}" in render_comparison(c)
    # no train_speakers in split.json (older runs, the baseline): the speakers of its train ids, from the store
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.csv").write_text("utt_id,speaker\n" + "".join(f"r{k}-0,s1\nr{k}-1,s2\n" for k in (1, 2, 3)))
    old = lambda n: {key: v for key, v in default_split(n, train=[f"r{n[-1]}-0", f"r{n[-1]}-1"]).items() if key != "train_speakers"}
    make_run(root, "e", "old", [0.5, 0.4, 0.6], data_dir=str(store), split=old)
    make_run(root, "e", "old2", [0.6, 0.4, 0.6], data_dir=str(store),
             split=lambda n: dict(old(n), train=[f"r{n[-1]}-0"]))
    [note] = [n for n in compare_runs(root, "e/old", "e/old2").notes if "trained on different" in n]
    assert "(e.g. fold-01: 2 vs 1 speakers; only in A: s2)" in note


def test_cli_compare(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "e1", "train", [0.6, 0.5, 0.7, 0.65, 0.61, 0.58])
    make_run(root, "e2", "train", [0.5, 0.4, 0.6, 0.55, 0.60, 0.50], val_uas=[0.7] * 6)
    out = invoke("report", root, "--compare", "e1/train", "e2/train").output
    assert "A: e1/train (ce head)" in out and "| fold-06 |" in out and "Wilcoxon signed-rank" in out
    out = invoke("report", root, "--compare", "e1/train", "e2/train", "--metric", "val_ua", "--format", "json").output
    assert json.loads(out)["diffs"] == pytest.approx([-20.0] * 6)
    target = tmp_path / "cmp.md"
    assert invoke("report", root, "--compare", "e1/train", "e2/train", "--out", target).output.strip() == f"wrote {target}"
    assert target.read_text().startswith("# ser-cl report: paired comparison")
    for args, expect in ((("--compare", "nope", "e2/train"), "error: no variant 'nope'"),
                         (("--compare", "train", "e2/train"), "error: 'train' is ambiguous"),
                         (("--compare", "e1/train", "e2/train", "--format", "csv"), "error: --compare prints md or json")):
        res = invoke("report", root, *args, code=2)
        assert res.output.startswith(expect) and len(res.output.strip().splitlines()) == 1, res.output
