"""`ser-cl ensemble`: the mean of several runs' class probabilities, fold by fold.

Checked against a brute-force reference: each member's best checkpoint run on one utterance at a
time (no batching, no length sorting), softmax, mean, argmax, and scikit-learn's balanced accuracy
(= UA); and, with one member, against the UA the training loop wrote in metrics.json.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.stores.store import FeatureStore
from ser_cl.eval.ensemble import EnsembleError, ensemble_runs
from ser_cl.eval.report import collect_runs
from ser_cl.experiment import Variant
from ser_cl.train.run import run_variant

from conftest import one_at_a_time_probabilities, tiny_stage


@pytest.fixture(scope="module")
def members(synth_mel_dir, tmp_path_factory):
    """Two seeds of a tiny CE run, fold 1 of protocol speaker only (the other folds never run)."""
    runs = tmp_path_factory.mktemp("runs")
    out = []
    for seed in (0, 1):
        cfg = tiny_stage(data={"dir": str(synth_mel_dir), "protocol": "speaker"}, optim={"seed": seed},
                         model={"input_norm": "speaker"},  # the reference normalises by numpy
                         runs_dir=str(runs / f"seed{seed}"), experiment="ce")
        out.append(run_variant(Variant(cfg, "train", {}), folds=[1], progress=False))
    return out


def _brute_force_probs(fold_dir, store, part):
    ids = json.loads((fold_dir / "split.json").read_text())[part]
    return ids, one_at_a_time_probabilities(fold_dir / "best.pt", store, [store.utt_ids.index(u) for u in ids])


def test_two_members_give_the_mean_of_their_probabilities(members, synth_mel_dir, tmp_path):
    store = FeatureStore(synth_mel_dir)
    out = ensemble_runs(members, tmp_path / "ens" / "two", device_spec="cpu", progress=False)
    metrics = json.loads((out / "fold-01" / "metrics.json").read_text())
    predictions = json.loads((out / "fold-01" / "predictions.json").read_text())
    for part in ("val", "test"):
        ids, p0 = _brute_force_probs(members[0] / "fold-01", store, part)
        ids1, p1 = _brute_force_probs(members[1] / "fold-01", store, part)
        assert ids1 == ids
        mean = (p0 + p1) / 2
        written = np.array([predictions["probabilities"][part][u] for u in ids])
        np.testing.assert_allclose(written, mean, atol=1e-4)
        y = np.array([store.labels[store.utt_ids.index(u)] for u in ids])
        assert metrics[part]["ua"] == pytest.approx(balanced_accuracy_score(y, mean.argmax(1)))
        assert [predictions[part][u] for u in ids] == [store.classes[k] for k in mean.argmax(1)]
        for member, score in zip(members, metrics["members"]):
            trained = json.loads((member / "fold-01" / "metrics.json").read_text())
            assert score[part] == pytest.approx(trained[part]["ua"])  # the member as it was trained


def test_one_member_reproduces_its_own_metrics(members, tmp_path):
    out = ensemble_runs(members[:1], tmp_path / "ens" / "one", device_spec="cpu", progress=False)
    mine = json.loads((out / "fold-01" / "metrics.json").read_text())
    trained = json.loads((members[0] / "fold-01" / "metrics.json").read_text())
    for part in ("val", "test"):
        assert mine[part]["ua"] == pytest.approx(trained[part]["ua"])
        assert mine[part]["confusion"] == trained[part]["confusion"]


def test_the_report_lists_the_ensemble_with_only_the_folds_every_member_completed(members, tmp_path):
    out = ensemble_runs(members, tmp_path / "ens" / "two", device_spec="cpu", progress=False)
    assert not (out / "fold-02").exists()  # no member trained fold 2
    [result] = collect_runs(tmp_path / "ens")
    assert result.method == "ensemble"
    assert [f.name for f in result.folds if f.complete] == ["fold-01"]
    expected = json.loads((out / "fold-01" / "metrics.json").read_text())["test"]["ua"]
    assert result.folds[0].scores["test"]["ua"] == pytest.approx(expected)


def test_members_with_different_splits_are_refused_naming_the_file(members, tmp_path):
    other = tmp_path / "other" / "train"
    shutil.copytree(members[1], other)
    split = json.loads((other / "fold-01" / "split.json").read_text())
    split["test"], split["val"] = split["val"], split["test"]
    (other / "fold-01" / "split.json").write_text(json.dumps(split))
    with pytest.raises(EnsembleError, match=r"other/train/fold-01/split.json") as err:
        ensemble_runs([members[0], other], tmp_path / "ens" / "bad", device_spec="cpu", progress=False)
    assert "\n" not in str(err.value)


def test_a_baseline_or_a_missing_run_is_not_a_member(members, tmp_path):
    baseline = tmp_path / "svm" / "baseline"
    shutil.copytree(members[1], baseline)
    run = json.loads((baseline / "run.json").read_text())
    (baseline / "run.json").write_text(json.dumps({**run, "stage": "baseline"}))
    with pytest.raises(EnsembleError, match="no classifier head"):
        ensemble_runs([members[0], baseline], tmp_path / "ens" / "x", device_spec="cpu", progress=False)
    with pytest.raises(EnsembleError, match="no run.json"):
        ensemble_runs([members[0], tmp_path / "nowhere"], tmp_path / "ens" / "x", device_spec="cpu", progress=False)
    with pytest.raises(EnsembleError, match="overwrite a member"):
        ensemble_runs(members, members[0], device_spec="cpu", progress=False)


def test_cli_prints_each_fold_and_the_ensemble_score(members, tmp_path):
    result = CliRunner().invoke(app, ["ensemble", str(tmp_path / "ens" / "cli"), *map(str, members),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ua = json.loads((tmp_path / "ens" / "cli" / "fold-01" / "metrics.json").read_text())["test"]["ua"]
    assert f"-> ensemble {100 * ua:.2f}" in result.output
    assert f"ensemble UA {100 * ua:.2f}" in result.output
    bad = CliRunner().invoke(app, ["ensemble", str(tmp_path / "ens" / "cli2"), str(tmp_path / "nowhere")])
    assert bad.exit_code != 0 and "no run.json" in bad.output


def test_the_report_header_names_every_stage_of_an_experiment(members, tmp_path):
    from ser_cl.eval.report import build_table, render

    runs = tmp_path / "runs"
    shutil.copytree(members[0], runs / "ce" / "train")
    ensemble_runs(members, runs / "ce" / "ens", device_spec="cpu", progress=False)
    md = render(build_table(collect_runs(runs)), "md")
    assert "## ce (stages: ensemble + train, protocol: speaker)" in md  # not the first row's stage alone


def test_a_split_naming_an_utterance_the_store_lacks_is_one_line_naming_both(members, tmp_path):
    runs = [tmp_path / "a" / "train", tmp_path / "b" / "train"]
    for member, copy in zip(members, runs):
        shutil.copytree(member, copy)
        split = json.loads((copy / "fold-01" / "split.json").read_text())
        split["test"][0] = "not-an-utterance"
        (copy / "fold-01" / "split.json").write_text(json.dumps(split))
    with pytest.raises(ValueError, match=r"a/train/fold-01/split.json: utterance 'not-an-utterance' is not in") as err:
        ensemble_runs(runs, tmp_path / "ens", device_spec="cpu", progress=False)
    assert "\n" not in str(err.value) and "re-prepared" in str(err.value)


def test_members_validated_on_other_speakers_give_an_ensemble_without_validation(members, tmp_path):
    other = tmp_path / "noval" / "train"
    shutil.copytree(members[1], other)
    split = json.loads((other / "fold-01" / "split.json").read_text())
    split["val"], split["val_speakers"] = [], []  # as data.val_speakers = 0 writes it
    (other / "fold-01" / "split.json").write_text(json.dumps(split))
    out = ensemble_runs([members[0], other], tmp_path / "ens" / "mixed", device_spec="cpu", progress=False)
    metrics = json.loads((out / "fold-01" / "metrics.json").read_text())
    both = json.loads((ensemble_runs(members, tmp_path / "ens" / "both", device_spec="cpu", progress=False)
                       / "fold-01" / "metrics.json").read_text())
    assert metrics["val"] is None and [m["val"] for m in metrics["members"]] == [None, None]
    assert metrics["test"] == both["test"]  # the same members' test probabilities
    assert json.loads((out / "fold-01" / "split.json").read_text())["val"] == []
    [result] = collect_runs(tmp_path / "ens" / "mixed")
    assert result.folds[0].complete and result.folds[0].scores["val"] is None
