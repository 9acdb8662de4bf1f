"""Data-parallel training of one large run under ``torchrun``, on PyTorch's own engine.

    torchrun --standalone --nproc_per_node 4 -m ser_cl.cli train experiments/ce_baseline.toml --fold 1
    # two machines: torchrun --nnodes 2 --node_rank {0,1} --nproc_per_node 8 \\
    #     --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m ser_cl.cli train ...

Every process builds the same model from the same seed and plans the same batches; each
gathers only its share of every batch (utterances ``rank::world``, padded to the whole batch's
mean length), the step runs under ``DistributedDataParallel`` (gradients averaged, BatchNorm
buffers broadcast from rank 0), contrastive losses gather the embeddings of all processes so
the negatives span the global batch (``loss.gather_distributed``), ``optim.sync_batchnorm``
takes BatchNorm statistics over the global batch, and rank 0 alone writes files. On one
process (no ``torchrun``) every function here is a no-op.
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


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` over the module's trainable parameters.

    ``device_ids`` stays None so the lengths the GRU needs on the CPU are not moved to the GPU.
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=None, find_unused_parameters=False)


def max_int(value: torch.Tensor) -> int:
    """The largest of an int tensor over the processes (one host read: use once per epoch)."""
    t = value.detach().reshape(1).to(torch.int64)
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def broadcast_float(value: float, device: torch.device) -> float:
    """Rank 0's value on every process (so schedulers decide alike)."""
    if rank_and_world()[1] == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t.item())
