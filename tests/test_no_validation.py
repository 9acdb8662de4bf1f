"""``data.val_speakers = 0``: train on every speaker but the test ones, score the last epoch.

Checked: the folds (every non-test speaker in train, brute force over the speakers), the config
rules (one line naming the keys to set, a plateau schedule refused), a trained fold (no validation
scores; the lr of each epoch against the closed form of optim.schedule = step and cosine; test UA equal to
scikit-learn's balanced accuracy of best.pt's predictions, which are last.pt's weights), the
report and the end-of-run summary (the fold counts, val shown as absent) and the probe (skipped,
said why).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from ser_cl.config import ConfigError
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.eval.report import collect_runs
from ser_cl.eval.run_probe import probe_run
from ser_cl.eval.summary import summarize_variant
from ser_cl.experiment import Variant
from ser_cl.train.checkpoint import load_checkpoint
from ser_cl.train.run import run_variant

from conftest import one_at_a_time_probabilities, tiny_stage


def test_the_folds_train_on_every_speaker_but_the_test_ones():
    rows = [{"speaker": s, "session": ""} for s in "abcde" for _ in range(3)]
    for protocol, extra in (("speaker", {}), ("speaker_groups", {"n_folds": 2})):
        for fold in make_folds(rows, protocol, val_speakers=0, **extra):
            assert fold.val.size == 0 and fold.val_speakers == []
            test = {rows[i]["speaker"] for i in fold.test}
            assert {rows[i]["speaker"] for i in fold.train} == set("abcde") - test
            assert fold.train.size + fold.test.size == len(rows)


def test_session_protocols_leave_validation_out_and_session5_trains_on_that_speaker():
    rows = [{"speaker": f"{sess}{g}", "session": sess} for sess in "ABC" for g in "FM" for _ in range(2)]
    for protocol in ("session10", "session5"):
        with_val, without = make_folds(rows, protocol), make_folds(rows, protocol, val_speakers=0)
        assert len(with_val) == len(without)
        for a, b in zip(with_val, without):
            assert b.val.size == 0 and list(b.test) == list(a.test)
            if protocol == "session5":  # the validation speaker (next session) joins train
                assert sorted(b.train) == sorted(np.concatenate([a.train, a.val]))
            else:  # session10: the held-out session's other speaker stays out of train
                assert list(b.train) == list(a.train)


def test_the_config_names_what_to_set():
    with pytest.raises(ConfigError, match='set optim.keep = "last", optim.early_stop = 0'):
        tiny_stage(data={"val_speakers": 0, "protocol": "speaker"})
    assert tiny_stage(data={"val_speakers": 0, "protocol": "holdout"}, optim={"keep": "last"})  # ignored there
    with pytest.raises(ConfigError, match="for train and baseline stages"):
        tiny_stage(stage="pretrain", loss={"name": "supcon"}, data={"val_speakers": 0, "protocol": "speaker"},
                   optim={"keep": "last", "monitor": "val_loss"})
    with pytest.raises(ConfigError, match='no validation speakers for optim.schedule = "plateau": set optim.schedule'):
        tiny_stage(data={"val_speakers": 0, "protocol": "speaker"}, optim={"keep": "last"})
    with pytest.raises(ConfigError, match="optim.schedule must be one of plateau, step, cosine, got 'linear'"):
        tiny_stage(optim={"schedule": "linear"})
    with pytest.raises(ConfigError, match="optim.step_epochs must be >= 1"):
        tiny_stage(optim={"schedule": "step", "step_epochs": 0})
    for schedule in ("step", "cosine"):
        cfg = tiny_stage(data={"val_speakers": 0, "protocol": "speaker"}, optim={"keep": "last", "schedule": schedule})
        assert cfg.data.val_speakers == 0 and cfg.optim.schedule == schedule


@pytest.fixture(scope="module")
def trained(synth_mel_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = tiny_stage(data={"dir": str(synth_mel_dir), "protocol": "speaker", "val_speakers": 0},
                     model={"input_norm": "speaker"},  # the reference normalises by numpy
                     optim={"keep": "last", "epochs": 3, "schedule": "step", "step_epochs": 1},
                     runs_dir=str(runs), experiment="noval")
    return run_variant(Variant(cfg, "train", {}), folds=[1], progress=False), runs


def test_a_fold_trains_on_every_other_speaker_and_scores_its_last_weights(trained, synth_mel_dir):
    out, _ = trained
    store = FeatureStore(synth_mel_dir)
    metrics = json.loads((out / "fold-01" / "metrics.json").read_text())
    split = json.loads((out / "fold-01" / "split.json").read_text())
    assert metrics["status"] == "complete" and metrics["val"] is None and metrics["kept_epoch"] == 3
    assert split["val"] == [] and len(split["train"]) + len(split["test"]) == len(store.utt_ids)
    history = [json.loads(line) for line in (out / "fold-01" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_ua"] for r in history] == [None] * 3
    assert [r["lr"] for r in history] == pytest.approx([3e-3, 3e-4, 3e-5])  # step_epochs 1: down every epoch
    best, last = load_checkpoint(out / "fold-01" / "best.pt"), load_checkpoint(out / "fold-01" / "last.pt")
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    rows = [store.utt_ids.index(u) for u in split["test"]]
    preds = one_at_a_time_probabilities(out / "fold-01" / "best.pt", store, rows).argmax(1)
    assert metrics["test"]["ua"] == pytest.approx(balanced_accuracy_score(store.labels[rows], preds))


@pytest.mark.parametrize("schedule,step_epochs", [("cosine", 10), ("step", 2)])
def test_the_lr_of_each_epoch_follows_the_schedule_in_closed_form(schedule, step_epochs, synth_mel_dir, tmp_path):
    epochs, lr, factor = 5, 2e-3, 0.5
    cfg = tiny_stage(data={"dir": str(synth_mel_dir), "protocol": "speaker", "val_speakers": 0},
                     optim={"keep": "last", "epochs": epochs, "lr": lr, "lr_factor": factor, "schedule": schedule,
                            "step_epochs": step_epochs}, runs_dir=str(tmp_path), experiment="sched")
    out = run_variant(Variant(cfg, "train", {}), folds=[1], progress=False)
    history = [json.loads(line) for line in (out / "fold-01" / "metrics.jsonl").read_text().splitlines()]
    if schedule == "cosine":  # half a cosine over the epochs, set at the start of each: lr ... > 0
        expected = [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    else:  # lr, lr, lr/2, lr/2, lr/4
        expected = [lr * factor ** (e // step_epochs) for e in range(epochs)]
    assert [r["lr"] for r in history] == pytest.approx(expected, rel=1e-9)


def test_the_report_the_summary_and_the_probe(trained, capsys):
    out, runs = trained
    [result] = collect_runs(runs)
    [fold] = [f for f in result.folds if f.complete]
    assert fold.name == "fold-01" and fold.scores["val"] is None
    ua = json.loads((out / "fold-01" / "metrics.json").read_text())["test"]["ua"]
    assert result.values("test", "ua") == pytest.approx([ua]) and result.values("val", "ua").size == 0
    lines = summarize_variant(out)
    assert f"  fold-01: no validation set, test UA {100 * ua:.2f}" in lines
    assert lines[-1].endswith("(no validation set) over 1/10 folds"), lines[-1]
    assert probe_run(out, progress=False) == []
    captured = capsys.readouterr()
    assert "no validation speakers (data.val_speakers = 0)" in captured.out + captured.err
