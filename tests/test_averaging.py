"""optim.ema_decay: the moving average of the weights, against a float64 reference of its formula,
inside the training loop (what best.pt / last.pt hold, resuming) and in the fingerprint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.train import loop
from ser_cl.train.averaging import WeightAverage
from ser_cl.train.checkpoint import load_checkpoint

from conftest import tiny_stage as stage  # the tests folder is on sys.path


def _snapshot(model):
    return {k: v.detach().double().clone() for k, v in model.state_dict().items()}


def _reference(snapshots, decay):
    """snapshots[0]: the weights before the first step, snapshots[t + 1]: after step t."""
    avg = {k: v.clone() for k, v in snapshots[0].items()}
    for t, live in enumerate(snapshots[1:]):
        d = min(decay, (1 + t) / (10 + t))
        for key, value in live.items():
            avg[key] = value.clone() if key.endswith("num_batches_tracked") else d * avg[key] + (1 - d) * value
    return avg


def _assert_close(state, reference, atol=1e-6):
    assert set(state) == set(reference)
    for key, value in state.items():
        np.testing.assert_allclose(value.double().numpy(), reference[key].numpy(), atol=atol, rtol=1e-5, err_msg=key)


def test_weight_average_follows_its_formula_parameters_and_buffers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    averaged = WeightAverage(model, decay=0.8)
    snapshots = [_snapshot(model)]
    for _ in range(25):  # past the warm-up, where d_t reaches 0.8
        loss = model(torch.randn(8, 5)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        averaged.update(model)
        snapshots.append(_snapshot(model))
    reference = _reference(snapshots, 0.8)
    _assert_close(averaged.model.state_dict(), reference)
    assert int(averaged.model[1].num_batches_tracked) == 25
    # the average is not the last weights (the test could not tell them apart otherwise)
    assert not torch.allclose(averaged.model[0].weight, model[0].weight)
    again = WeightAverage(model, decay=0.8)
    again.load_state_dict(averaged.state_dict())
    _assert_close(again.model.state_dict(), reference)
    assert again.steps == 25
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(model, decay=1.0)


@pytest.fixture(scope="module")
def store(synth_mel_dir):
    return FeatureStore(synth_mel_dir)


def test_the_loop_validates_and_keeps_the_averaged_weights(store, tmp_path, monkeypatch):
    """last.pt's average and best.pt against the reference built from the trained weights of
    every step; best.pt is the average at the end of its epoch, not the trained weights."""
    fold = make_folds(store, "session10")[0]
    cfg = stage(optim={"epochs": 3, "ema_decay": 0.9})
    snapshots, per_epoch = [], []
    real_step = loop.train_step

    def recording_step(step_module, *args, **kwargs):
        model = step_module.model
        if not snapshots:
            snapshots.append(_snapshot(model))
        out = real_step(step_module, *args, **kwargs)
        snapshots.append(_snapshot(model))
        return out

    monkeypatch.setattr(loop, "train_step", recording_step)
    metrics = loop.train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False,
                              on_epoch_end=lambda epoch: per_epoch.append(len(snapshots)))
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["ema"]["steps"] == len(snapshots) - 1
    _assert_close(last["ema"]["model"], _reference(snapshots, 0.9))
    _assert_close(last["model"], snapshots[-1], atol=0)  # last.pt also keeps the trained weights
    best = load_checkpoint(tmp_path / "best.pt")
    _assert_close(best["model"], _reference(snapshots[:per_epoch[best["epoch"]]], 0.9))
    assert metrics["best_epoch"] == best["epoch"] + 1


def test_an_interrupted_averaged_run_resumes_to_the_same_result(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    cfg = stage(optim={"ema_decay": 0.9}, augment={"enabled": True})
    straight = loop.train_fold(cfg, store, fold, tmp_path / "a", torch.device("cpu"), progress=False)

    def kill(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.train_fold(cfg, store, fold, tmp_path / "b", torch.device("cpu"), on_epoch_end=kill, progress=False)
    resumed = loop.train_fold(cfg, store, fold, tmp_path / "b", torch.device("cpu"), progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert a["ema"]["steps"] == b["ema"]["steps"]
    for key, value in a["ema"]["model"].items():
        assert torch.equal(value, b["ema"]["model"][key]), key
    assert straight["val"] == resumed["val"] and straight["test"] == resumed["test"]


def test_the_fingerprint_leaves_out_the_average_while_it_is_off():
    from ser_cl.train.fingerprint import config_fingerprint

    assert "optim.ema_decay" not in config_fingerprint(stage())
    assert config_fingerprint(stage(optim={"ema_decay": 0.9}))["optim.ema_decay"] == 0.9
