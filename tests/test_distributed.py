"""torchrun data parallelism on the CPU (gloo): sharded gradients average to the full-batch
gradient, and a 2-process training run completes with files written once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ser_cl.train import distributed

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 3
    loss = torch.nn.functional.cross_entropy(model(x[rank::world]), y[rank::world])
    loss.backward()
    distributed.average_gradients(model)
    if rank == 0:
        torch.save([p.grad for p in model.parameters()], out)
    dist.destroy_process_group()


def test_sharded_gradients_average_to_the_full_batch_gradient(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 3
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for got, want in zip(torch.load(out), [p.grad for p in model.parameters()]):
        torch.testing.assert_close(got, want)


def test_single_process_helpers_are_no_ops():
    assert distributed.rank_and_world() == (0, 1) and distributed.is_main()
    assert distributed.all_finite(torch.tensor(1.0)) and not distributed.all_finite(torch.tensor(float("inf")))
    assert distributed.broadcast_float(0.5, torch.device("cpu")) == 0.5


def test_torchrun_training_completes(synth_data_dir, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed beside this Python")
    sets = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
            "model.d_ff=32", "optim.epochs=2", "optim.batch_size=16", f'data.dir="{synth_data_dir}"',
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
