"""The steady-state training step reads no device value on the host (no host-device sync).

On the CPU this is checked by counting host reads (tests/host_sync.py) around real steps of the
training loop; on CUDA (skipped without a GPU) with PyTorch's own detector,
``torch.cuda.set_sync_debug_mode("error")``, which raises on any synchronising call.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from host_sync import count_host_reads
from ser_cl.config import stage_from_dict
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.batches.loader import BatchLoader, plan_epoch
from ser_cl.data.stores.store import FeatureStore
from ser_cl.models import SERModel
from ser_cl.train.build import model_config_for
from ser_cl.train.loop import TrainStep, make_optimizer, phases_of, set_trainable, train_step
from ser_cl.train.objective import Objective

TINY = {"preset": "small", "conv_channels": 4, "gru_hidden": 16, "n_heads": 2, "d_ff": 32, "freq_kernels": "scaled"}
RECIPES = {
    "ce": {"stage": "train"},
    "ce_aug_supcon": {"stage": "train", "augment": {"enabled": True}, "loss": {"supcon_weight": 0.5}},
    "supcon": {"stage": "pretrain", "loss": {"name": "supcon"}},
    "triplet_schedule": {"stage": "pretrain", "loss": {"name": "triplet", "mining": "semihard-hard"}},
    "selfsup_multiview": {"stage": "pretrain", "loss": {"name": "selfsup_ntxent"},
                          "augment": {"enabled": True, "multiview": True}},
    "padded_gru": {"stage": "train", "model": {"gru_impl": "padded"}},
    "mixup_stretch_smoothing_globalnorm": {
        "stage": "train", "model": {"input_norm": "global", "pooling": "attention"},
        "augment": {"enabled": True, "mixup_alpha": 0.4, "time_stretch": 0.1}, "loss": {"label_smoothing": 0.1}},
}


def _setup(store, recipe, device):
    table = {"model": dict(TINY), "optim": {"epochs": 2, "batch_size": 16}, **RECIPES[recipe]}
    table["model"] = {**TINY, **RECIPES[recipe].get("model", {})}
    cfg = stage_from_dict(table, "test")
    torch.manual_seed(0)
    fold = make_folds(store, "session10")[0]
    model = SERModel(model_config_for(cfg, store.n_freq), len(store.classes)).to(device).train()
    objective = Objective(cfg.loss, cfg.has_head)
    phase = phases_of(cfg, 8)[0]
    set_trainable(model, cfg, phase, objective)
    optimizer, _ = make_optimizer(model, cfg, device)
    objective.set_epoch(1, 2)  # the hard phase of the schedule
    plans = plan_epoch(store.lengths, fold.train, cfg.optim.batch_size, np.random.default_rng(0))
    batches = list(BatchLoader(store, device)(plans[:3]))  # gathered before counting (another thread)
    gen = torch.Generator(device=device).manual_seed(0)
    return cfg, TrainStep(model, objective), optimizer, batches, gen


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_training_step_makes_no_host_read(synth_mel_dir, recipe):
    store = FeatureStore(synth_mel_dir)
    device = torch.device("cpu")
    cfg, step, optimizer, batches, gen = _setup(store, recipe, device)
    rng = np.random.default_rng(0)
    train_step(step, optimizer, batches[0], cfg, gen, device, rng)  # the first step creates Adam's state
    with count_host_reads() as reads:
        for batch in batches[1:]:
            loss, parts = train_step(step, optimizer, batch, cfg, gen, device, rng)
    # A PackedSequence keeps its batch_sizes on the CPU on every device (PyTorch's design), so
    # nn.GRU reading them is bookkeeping, not a device sync; every other read is a failure.
    device_reads = [r for r in reads.calls if "get_expected_hidden_size" not in r.where]
    assert not device_reads, reads.summary()
    assert torch.isfinite(loss) and set(parts) >= {next(iter(step.objective.terms))}


def test_the_counter_sees_a_read_in_the_step(synth_mel_dir, monkeypatch):
    """A step that checks its loss on the host (as the loop once did) is caught."""
    store = FeatureStore(synth_mel_dir)
    device = torch.device("cpu")
    cfg, step, optimizer, batches, gen = _setup(store, "ce", device)
    with count_host_reads() as reads:
        loss, _ = train_step(step, optimizer, batches[1], cfg, gen, device)
        assert bool(torch.isfinite(loss))
    assert [r.name for r in reads.calls if "get_expected_hidden_size" not in r.where] == ["Tensor.__bool__"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("on_device", [False, True])
def test_cuda_training_step_does_not_synchronise(synth_mel_dir, recipe, on_device):
    store = FeatureStore(synth_mel_dir)
    device = torch.device("cuda")
    cfg, step, optimizer, _, gen = _setup(store, recipe, device)
    fold = make_folds(store, "session10")[0]
    plans = plan_epoch(store.lengths, fold.train, cfg.optim.batch_size, np.random.default_rng(1))
    loader = BatchLoader(store, device, on_device=on_device)
    batches = iter(loader(plans))
    rng = np.random.default_rng(0)
    train_step(step, optimizer, next(batches), cfg, gen, device, rng)  # warm-up: Adam state, cuDNN plans
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _, batch in zip(range(3), batches):
            train_step(step, optimizer, batch, cfg, gen, device, rng)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
