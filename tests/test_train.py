"""The training loop on the synthetic corpus: learning, resuming, divergence, fine-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch


from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.train.checkpoint import load_checkpoint
from ser_cl.train.loop import TrainingDiverged, train_fold

from conftest import TINY, tiny_stage as stage  # the tests folder is on sys.path


@pytest.fixture(scope="module")
def store(synth_mel_dir):
    return FeatureStore(synth_mel_dir)


@pytest.fixture(scope="module")
def learn_store(tmp_path_factory):
    """A larger synthetic corpus (8 utterances per speaker and class, 40 log-mel bands) for the learning test."""
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare
    from ser_cl.data.corpora.synth import synthesize_corpus

    raw = tmp_path_factory.mktemp("learn-raw")
    synthesize_corpus(raw, per_speaker=8, seed=1, duration=(0.6, 1.0), n_dropped=0)
    data = tmp_path_factory.mktemp("learn-data")
    prepare(raw, data, jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    return FeatureStore(data)


def test_ce_training_learns_well_above_chance(learn_store, tmp_path):
    torch.set_num_threads(2)
    fold = make_folds(learn_store, "session10")[0]
    cfg = stage(optim={"epochs": 8, "lr": 3e-3}, model={"conv_channels": 8, "gru_hidden": 32})
    metrics = train_fold(cfg, learn_store, fold, tmp_path / "fold-01", torch.device("cpu"), progress=False)
    history = [json.loads(line) for line in (tmp_path / "fold-01" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 8 and [h["epoch"] for h in history] == list(range(1, 9))
    # 4 balanced classes: chance UA is 0.25
    assert metrics["best_value"] == max(h["val_ua"] for h in history)
    assert metrics["val"]["ua"] == pytest.approx(metrics["best_value"])
    assert metrics["best_value"] >= 0.6, history
    assert metrics["test"]["ua"] >= 0.45, metrics


def _weights(path):
    return load_checkpoint(path)["model"]


def test_interrupted_run_resumes_to_the_same_result(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    cfg = stage(augment={"enabled": True})
    straight = train_fold(cfg, store, fold, tmp_path / "a", torch.device("cpu"), progress=False)

    def kill(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fold(cfg, store, fold, tmp_path / "b", torch.device("cpu"), on_epoch_end=kill, progress=False)
    assert not (tmp_path / "b" / "metrics.json").exists()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 0
    resumed = train_fold(cfg, store, fold, tmp_path / "b", torch.device("cpu"), progress=False)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    for key, value in _weights(tmp_path / "a" / "last.pt").items():
        assert torch.equal(value, _weights(tmp_path / "b" / "last.pt")[key]), key
    assert straight["val"] == resumed["val"] and straight["test"] == resumed["test"]


def test_a_complete_fold_is_not_trained_again(store, tmp_path):
    fold = make_folds(store, "session10")[1]
    cfg = stage(optim={"epochs": 1})
    train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    stamp = (tmp_path / "best.pt").stat().st_mtime_ns
    train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    assert (tmp_path / "best.pt").stat().st_mtime_ns == stamp


def test_nan_loss_stops_with_epoch_and_step(store, tmp_path, monkeypatch):
    from ser_cl.train.objective import Objective

    real = Objective.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if self.training:  # training steps only (validation runs the objective in eval mode)
            calls["n"] += 1
            if calls["n"] == 3:
                out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Objective, "forward", poisoned)
    fold = make_folds(store, "session10")[0]
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step 3"):
        train_fold(stage(), store, fold, tmp_path, torch.device("cpu"), progress=False)


@pytest.mark.parametrize("loss", ["triplet", "smooth_triplet", "ntxent", "supcon", "selfsup_ntxent"])
def test_pretraining_with_each_contrastive_loss(store, tmp_path, loss):
    fold = make_folds(store, "session10")[0]
    multiview = loss == "selfsup_ntxent"
    cfg = stage(stage="pretrain", loss={"name": loss, "mining": "semihard-hard"}, optim={"epochs": 1},
                augment={"enabled": multiview, "multiview": multiview})
    metrics = train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    assert metrics["monitor"] == "val_loss" and np.isfinite(metrics["best_value"])
    assert metrics["val"] is None  # no classifier head: the probe's SVM judges the encoder
    ckpt = load_checkpoint(tmp_path / "best.pt")
    assert ckpt["has_head"] is False and ckpt["model_config"]["normalize"] is True


def test_pretraining_on_views_cut_at_their_own_offsets(store, tmp_path):
    """augment.view_frames: the views' lengths reach the packed BiGRU on the host, and the run
    differs from the thesis' shared crop (whose random numbers it would otherwise repeat)."""
    fold = make_folds(store, "session10")[0]
    results = {}
    for view_frames in (0, 12):
        cfg = stage(stage="pretrain", loss={"name": "selfsup_ntxent"}, optim={"epochs": 1},
                    augment={"enabled": True, "multiview": True, "view_frames": view_frames})
        metrics = train_fold(cfg, store, fold, tmp_path / str(view_frames), torch.device("cpu"), progress=False)
        assert np.isfinite(metrics["best_value"])
        results[view_frames] = metrics["best_value"]
    assert results[0] != results[12]


def test_combined_ce_supcon_selfsup(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    cfg = stage(loss={"supcon_weight": 1.0, "selfsup_weight": 0.5}, optim={"epochs": 1},
                augment={"enabled": True, "multiview": True})
    train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    parts = record["train_ce"] + 1.0 * record["train_supcon"] + 0.5 * record["train_selfsup_ntxent"]
    assert record["train_loss"] == pytest.approx(parts, rel=1e-5)


def test_finetune_freezes_the_encoder_then_trains_it(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    pre = stage(stage="pretrain", loss={"name": "supcon"}, optim={"epochs": 1})
    train_fold(pre, store, fold, tmp_path / "pre", torch.device("cpu"), progress=False)
    source = _weights(tmp_path / "pre" / "best.pt")

    ft = stage(stage="finetune", finetune={"from": str(tmp_path / "pre"), "freeze_epochs": 1}, optim={"epochs": 1})
    train_fold(ft, store, fold, tmp_path / "ft1", torch.device("cpu"), source_checkpoint=tmp_path / "pre" / "best.pt",
               progress=False)
    tuned = _weights(tmp_path / "ft1" / "last.pt")
    for key, value in source.items():
        if key.startswith("classifier."):
            assert not torch.equal(value, tuned[key]), f"head {key} did not train"
        else:  # frozen: weights and BatchNorm statistics untouched
            assert torch.equal(value, tuned[key]), f"frozen encoder changed: {key}"

    ft2 = stage(stage="finetune", finetune={"from": str(tmp_path / "pre"), "freeze_epochs": 0}, optim={"epochs": 1})
    train_fold(ft2, store, fold, tmp_path / "ft2", torch.device("cpu"), source_checkpoint=tmp_path / "pre" / "best.pt",
               progress=False)
    changed = [k for k, v in _weights(tmp_path / "ft2" / "last.pt").items() if not torch.equal(v, source[k])]
    assert any(k.startswith("conv") or "gru" in k for k in changed), changed


@pytest.mark.parametrize("loss", ["barlow_twins", "vicreg"])
def test_pretraining_with_the_non_contrastive_losses_feeds_them_the_raw_projection(store, tmp_path, loss,
                                                                                      monkeypatch):
    from ser_cl import losses

    seen = []
    cls = losses.LOSS_CLASSES[loss]
    real = cls.forward

    def spy(self, z, labels=None, shard_sizes=None):
        seen.append(z.detach().norm(dim=1))
        return real(self, z, labels, shard_sizes)

    monkeypatch.setattr(cls, "forward", spy)
    fold = make_folds(store, "session10")[0]
    cfg = stage(stage="pretrain", loss={"name": loss}, optim={"epochs": 1}, model={**TINY, "proj_dim": 16},
                augment={"enabled": True, "multiview": True})
    metrics = train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    assert np.isfinite(metrics["best_value"])
    assert seen and not torch.allclose(seen[0], torch.ones_like(seen[0]))  # not L2-normalised
