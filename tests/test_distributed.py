"""torchrun data parallelism on the CPU (gloo): a DDP step over shards (negatives gathered,
BatchNorm synced) equals one process on the whole batch, and a 2-process training run
completes with files written once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from gloo_workers import run_workers

from ser_cl.train import distributed

ROOT = Path(__file__).resolve().parents[1]


TINY = dict(n_freq=257, conv_channels=4, gru_hidden=8, n_heads=2, d_ff=16, gru_dropout=0.0,
            transformer_dropout=0.0)
CASES = {  # loss config, head?, 2 views?
    "ce": (dict(name="ce"), True, False),
    "ce_supcon": (dict(name="ce", supcon_weight=1.0), True, False),
    "supcon": (dict(name="supcon", tau=0.1), False, False),
    "selfsup_ntxent": (dict(name="selfsup_ntxent", tau=0.5), False, True),
}


def _batch():
    """8 utterances padded to 30 frames, longest first (as the loader gives them)."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([30, 30, 28, 25, 22, 20, 17, 12])
    x = torch.randn(8, 30, 257, generator=g) * (torch.arange(30)[None, :, None] < lengths[:, None, None])
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    return x, lengths, labels


def _step(case: str, x, lengths, labels, gather: bool):
    from ser_cl.config import LossConfig
    from ser_cl.models import ModelConfig, SERModel
    from ser_cl.train.loop import TrainStep
    from ser_cl.train.objective import Objective

    loss_cfg, head, views = CASES[case]
    torch.manual_seed(0)
    model = SERModel(ModelConfig(**TINY, normalize=not head), 3).train()
    objective = Objective(LossConfig(**loss_cfg), with_head=head, gather=gather)
    if views:  # two (here identical) views per utterance, rows 2k and 2k+1
        x, lengths, labels = (t.repeat_interleave(2, dim=0) for t in (x, lengths, labels))
    return model, TrainStep(model, objective), (x, lengths, lengths, labels)


def _worker(rank: int, port: int, out: str) -> None:
    world = 2
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x, lengths, labels = _batch()
    shard = slice(rank, None, world)  # the loader's rank::world share of the batch
    results = {}
    for case, (_, head, _) in CASES.items():
        model, step, args = _step(case, x[shard], lengths[shard], labels[shard], gather=True)
        model.set_sync_batchnorm(True)
        for p in model.classifier.parameters():
            p.requires_grad_(head)
        ddp = distributed.wrap(step, torch.device("cpu"))
        views = 2 if CASES[case][2] else 1
        loss, _ = ddp(*args, (4 * views, 4 * views))  # every rank's rows: no exchange needed
        loss.backward()
        losses = [torch.zeros(()) for _ in range(world)]
        dist.all_gather(losses, loss.detach().float())
        results[case] = {"losses": losses,
                         "grads": {n: p.grad for n, p in model.named_parameters() if p.grad is not None}}
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "ddp.pt"
    run_workers("test_distributed", "_worker", out)  # 2 processes forked from a fresh interpreter
    return torch.load(out)


@pytest.mark.parametrize("case", list(CASES))
def test_ddp_step_equals_one_process_on_the_whole_batch(ddp_results, case):
    """2 gloo processes under DDP, each with half of the batch, negatives gathered and BatchNorm
    statistics synced: the loss and the (averaged) gradients equal one process on everything."""
    got = ddp_results[case]
    model, step, args = _step(case, *_batch(), gather=False)
    loss, _ = step(*args)
    loss.backward()
    head = CASES[case][1]
    for rank_loss in got["losses"] if not head else []:  # contrastive: every rank holds the global loss
        assert float(rank_loss) == pytest.approx(float(loss.detach()), rel=1e-5)
    if head:  # CE: the mean of the two shards' means
        assert float(sum(got["losses"])) / 2 == pytest.approx(float(loss.detach()), rel=1e-5)
    want = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(got["grads"]) == set(want)
    for name, grad in want.items():
        if name.endswith("conv.bias"):  # followed by BatchNorm: zero in exact arithmetic, noise here
            assert got["grads"][name].abs().max() < 1e-4 and grad.abs().max() < 1e-4
            continue
        # float32, summed in another order: elementwise to 1e-5 of the tensor's largest entry
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()),
                                   msg=name)


def test_gathering_matters(tmp_path):
    """Without gathering, a shard's SupCon loss is not the whole batch's (so the test above can fail)."""
    x, lengths, labels = _batch()
    _, step, args = _step("supcon", x, lengths, labels, gather=False)
    _, half, half_args = _step("supcon", x[::2], lengths[::2], labels[::2], gather=False)
    assert abs(float(step(*args)[0]) - float(half(*half_args)[0])) > 1e-3


def test_single_process_helpers_are_no_ops():
    assert distributed.rank_and_world() == (0, 1) and distributed.is_main()
    assert distributed.max_int(torch.tensor(-1)) == -1
    assert distributed.broadcast_float(0.5, torch.device("cpu")) == 0.5


def test_torchrun_training_completes(synth_mel_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    sets = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
            "model.d_ff=32", "model.freq_kernels=scaled", "optim.epochs=2", "optim.batch_size=16", f'data.dir="{synth_mel_dir}"',
            f'runs_dir="{tmp_path}"']
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ser_cl.cli", "train",
           str(ROOT / "experiments/ce_baseline.toml"), "--fold", "3"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    fold = tmp_path / "ce_baseline/train/fold-03"
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["epochs_run"] == 2
    assert len((fold / "metrics.jsonl").read_text().splitlines()) == 2
    assert not list(fold.glob(".*.tmp*"))
