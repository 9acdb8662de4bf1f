"""Gathering a batch over all processes, with gradients, for the batch-level losses.

With data parallelism each process holds a shard of the batch. A contrastive loss computed on
its shard alone sees only the shard's negatives (and a Barlow Twins / VICReg loss only the
shard's statistics). ``gather_rows`` concatenates the shards of every process, in rank order,
into the global batch (like lightly's ``gather_distributed`` or VICReg's ``FullGatherLayer``):

    forward:   z_all = cat(z_0, z_1, ..., z_{W-1})        (the same tensor on every rank)
    backward:  dL/dz_r = sum over ranks q of (dL_q / dz_all)[rows of rank r]

Every rank then computes the loss L over the global batch (all anchors), so every rank holds the
same L. Because the backward *sums* the gradient over ranks, rank r's parameter gradient is
``W * dL/dtheta`` restricted to its own rows; the usual DDP *average* over the W ranks then gives
exactly ``dL/dtheta`` of one process on the whole batch (also when the shards differ in size).

Row counts. ``all_gather`` needs every rank's row count. With ``sizes=None`` they are exchanged
(one tiny collective plus one host read of W integers, i.e. a host-device sync on CUDA); the
caller can avoid it by passing ``sizes`` itself, e.g. ``strided_shard_sizes(batch, world)`` for
the ``x[rank::world]`` split of the training loop. On one process (torch.distributed not
initialised, or a world size of 1) every function here returns its input unchanged.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.distributed as dist

__all__ = [
    "gather_batch",
    "gather_labels",
    "gather_rows",
    "rank_and_world",
    "strided_shard_sizes",
]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` when not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def strided_shard_sizes(batch: int, world: int) -> list[int]:
    """Row counts of the shards ``x[r::world]`` (r = 0 .. world-1) of a batch of ``batch`` rows."""
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    return [len(range(r, batch, world)) for r in range(world)]


def _resolve_sizes(x: torch.Tensor, sizes: Optional[Sequence[int]], rank: int, world: int) -> tuple[int, ...]:
    """Every rank's row count: checked ``sizes`` if given, else exchanged with all_gather."""
    n_local = x.shape[0]
    if sizes is not None:
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) != world:
            raise ValueError(f"sizes must give one row count per rank ({world}), got {list(sizes)}")
        if sizes[rank] != n_local:
            raise ValueError(f"sizes[{rank}] = {sizes[rank]} but this rank holds {n_local} rows")
        return sizes
    count = torch.tensor([n_local], dtype=torch.int64, device=x.device)
    counts = [torch.empty_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    return tuple(torch.cat(counts).tolist())  # the one host read (avoid it by passing sizes)


def _all_gather_rows(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Concatenate every rank's ``x`` (rank order), padding to the largest shard for the transfer."""
    x = x.contiguous()
    largest = max(sizes)
    if x.shape[0] < largest:
        x = torch.cat([x, x.new_zeros((largest - x.shape[0],) + tuple(x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradient over ranks (all_reduce SUM)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes = sizes
        ctx.rank = rank
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place; never modify grad_output
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: torch.Tensor, sizes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """The rows of ``x`` from every process, concatenated in rank order, differentiably.

    ``x``: ``[n_r, ...]`` on rank r (a shard of the batch). Returns ``[sum_r n_r, ...]``, identical
    on every rank; its backward all-reduces (sums) the incoming gradient over the ranks and hands
    each rank the slice of its own rows (see the module docstring for why DDP's gradient average
    then equals the single-process gradient). ``sizes``: the row count of every rank, if the
    caller knows them (no exchange, no host read); ``None`` exchanges them. No-op on one process.
    """
    rank, world = rank_and_world()
    if world == 1:
        return x
    sizes_t = _resolve_sizes(x, sizes, rank, world)
    return _GatherRows.apply(x, sizes_t, rank)


def gather_labels(labels: torch.Tensor, sizes: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``gather_rows`` for tensors without gradient (labels); no-op on one process."""
    rank, world = rank_and_world()
    if world == 1:
        return labels
    with torch.no_grad():
        return _all_gather_rows(labels, _resolve_sizes(labels, sizes, rank, world))


def gather_batch(
    z: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    sizes: Optional[Sequence[int]] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(gather_rows(z), gather_labels(labels))`` with one row-count exchange at most.

    No-op on one process. ``labels`` may be None (self-supervised losses).
    """
    rank, world = rank_and_world()
    if world == 1:
        return z, labels
    sizes_t = _resolve_sizes(z, sizes, rank, world)
    z_all = _GatherRows.apply(z, sizes_t, rank)
    if labels is None:
        return z_all, None
    if labels.shape[0] != z.shape[0]:
        raise ValueError(f"labels [{labels.shape[0]}] do not match the {z.shape[0]} rows of z")
    with torch.no_grad():
        labels_all = _all_gather_rows(labels, sizes_t)
    return z_all, labels_all
