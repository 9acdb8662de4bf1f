"""``optim.keep``: which weights a fold keeps in best.pt and is scored with.

The validation UA is made to peak at epoch 1 (a wrapper lowers it every later epoch), so "best"
and "last" keep different weights. "last" is checked against last.pt's trained weights and an
independent evaluation of them (one utterance at a time, scikit-learn's balanced accuracy).
"""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from ser_cl.config import ConfigError
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.train import loop
from ser_cl.train.checkpoint import load_checkpoint

from conftest import one_at_a_time_probabilities, tiny_stage as stage

EPOCHS = 2


@pytest.fixture(scope="module")
def store(synth_mel_dir):
    return FeatureStore(synth_mel_dir)


def _peak_at_epoch_1(monkeypatch):
    real = loop.evaluate
    calls = {"epoch": 0}

    def evaluate(model, store, indices, cfg, device, objective=None, loader=None):
        out = real(model, store, indices, cfg, device, objective, loader)
        if objective is not None:  # a per-epoch validation (the final scores pass no objective)
            calls["epoch"] += 1
            out["ua"] = 1.0 / calls["epoch"]
        return out

    monkeypatch.setattr(loop, "evaluate", evaluate)


def _train(store, tmp_path, monkeypatch, keep):
    _peak_at_epoch_1(monkeypatch)
    fold = make_folds(store, "session10")[0]
    cfg = stage(optim={"epochs": EPOCHS, "keep": keep}, model={"input_norm": "speaker"})  # reference: numpy
    return loop.train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False), fold


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_scores_the_best_validation_epoch(store, tmp_path, monkeypatch):
    metrics, _ = _train(store, tmp_path, monkeypatch, "best")
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert metrics["best_epoch"] == 1 and metrics["kept_epoch"] == 1 and metrics["kept"] == "best"
    assert best["epoch"] == 0
    assert not _same(best["model"], last["model"])  # the scenario holds: two different weights


def test_keep_last_scores_the_last_epoch(store, tmp_path, monkeypatch):
    metrics, fold = _train(store, tmp_path, monkeypatch, "last")
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert metrics["best_epoch"] == 1  # still reported: the best validation epoch
    assert metrics["kept_epoch"] == EPOCHS and metrics["kept"] == "last"
    assert best["epoch"] == EPOCHS - 1
    assert _same(best["model"], last["model"])
    preds = one_at_a_time_probabilities(tmp_path / "best.pt", store, fold.test).argmax(1)
    assert metrics["test"]["ua"] == pytest.approx(balanced_accuracy_score(store.labels[fold.test], preds))


def test_keep_is_checked():
    with pytest.raises(ConfigError, match="optim.keep must be best or last"):
        stage(optim={"keep": "first"})
