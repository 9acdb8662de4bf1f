"""Data-parallel training of one large run with ``torchrun`` (DDP-style, hand-written).

    torchrun --nproc_per_node 4 -m ser_cl.cli train experiments/ce_baseline.toml --fold 1

Every process builds the same model from the same seed and walks the same shuffled batches; each
takes its share of every batch (utterances ``rank::world``), gradients are averaged with
all-reduce after ``backward`` (so the update equals one step on the whole batch for a per-sample
mean loss such as CE), BatchNorm statistics are averaged after every epoch, and rank 0 alone
writes files. Contrastive losses see the negatives of their own shard only. On one process
(no ``torchrun``) every function here is a no-op.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.distributed as dist


def setup() -> Optional[torch.device]:
    """Join the process group that torchrun describes in the environment; the device to use."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def rank_and_world() -> tuple:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def average_gradients(model: torch.nn.Module) -> None:
    world = rank_and_world()[1]
    if world == 1:
        return
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:  # a parameter unused on this shard still takes part
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world


def average_buffers(model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the processes."""
    world = rank_and_world()[1]
    if world == 1:
        return
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b /= world


def all_finite(loss: torch.Tensor) -> bool:
    """Whether the loss is finite on every process (so all stop together)."""
    flag = torch.isfinite(loss.detach()).float().reshape(1)
    if rank_and_world()[1] > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's value on every process (so schedulers decide alike)."""
    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
