"""Small shared pieces of the loss modules: the base class and numerical helpers."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch
from torch import nn

F_ = TypeVar("F_", bound=Callable[..., torch.Tensor])


class Loss(nn.Module):
    """Base of the ser-cl loss modules.

    Class attributes tell the training loop how to call a loss:
      ``input``: "logits" (classifier output) or "embeddings" (z);
      ``normalized_input``: whether the loss expects L2-normalised embeddings (True for the
        cosine-similarity losses of the thesis; False for Barlow Twins and VICReg, which take
        the un-normalised projector output);
      ``needs_labels``: whether the labels are used;
      ``multiview``: whether the batch must be a multi-view batch (rows 2k, 2k+1 = views of k).
    Batch-level losses take ``gather_distributed`` (constructor): with torch.distributed
    initialised and more than one process, the batch of every process is gathered (with
    gradients, ``gather.py``) and the loss is computed over the global batch on every rank;
    ``forward(..., shard_sizes=[n_0, .., n_{W-1}])`` spares the exchange of the row counts.
    ``set_epoch(epoch, n_epochs)`` is called by the training loop at the start of each epoch;
    only losses with an epoch schedule (triplet "semihard-hard") do anything with it.

    No loss reads tensor values on the host in forward or backward (no ``.item()``, no
    data-dependent shapes): edge cases are handled with masks and clamped denominators, so a
    CUDA training step is not stalled by the loss.
    """

    name: str = ""
    input: str = "embeddings"
    normalized_input: bool = True
    needs_labels: bool = True
    multiview: bool = False

    def set_epoch(self, epoch: int, n_epochs: int) -> None:  # noqa: D401 - no-op by default
        """Tell the loss which (0-based) epoch of ``n_epochs`` starts; no-op by default."""


def check_temperature(tau: float) -> float:
    """Return ``tau`` as a float, raising ValueError unless it is > 0."""
    tau = float(tau)
    if not tau > 0:
        raise ValueError(f"temperature tau must be > 0, got {tau}")
    return tau


def as_loss_dtype(z: torch.Tensor) -> torch.Tensor:
    """Up-cast half / bfloat16 inputs to float32 (the exponentials at tau = 0.01 need range)."""
    if z.dtype in (torch.float16, torch.bfloat16):
        return z.float()
    return z


def full_precision(fn: F_) -> F_:
    """Run the loss function ``fn(z, ...)`` with autocast disabled on ``z``'s device.

    Under ``torch.autocast`` (the bf16 training step) a matmul such as ``z @ z.T`` would run in
    bfloat16 even after ``as_loss_dtype``: 8 bits of mantissa, an error of ~0.4 in a logit
    ``s / tau`` of 100 at tau = 0.01. With autocast off the loss runs in its inputs' dtype
    (float32 after ``as_loss_dtype``); without autocast nothing changes.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> torch.Tensor:
        z = args[0] if args else kwargs["z"]
        with torch.autocast(device_type=z.device.type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def very_negative(dtype: torch.dtype) -> float:
    """A finite stand-in for -inf in masked log-sum-exps.

    Finite so that rows with nothing left (no negatives, a batch of one) give finite values
    and finite (zero) gradients instead of the NaNs that ``-inf - -inf`` produces.
    """
    return torch.finfo(dtype).min


def safe_count(mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Number of True entries of ``mask`` (over ``dim``, or all), at least 1, as a tensor.

    The denominator of a mean over a masked set without reading the count on the host: an empty
    set has a zero numerator, so it gives 0 / 1 = 0 instead of branching on ``int(mask.sum())``.
    """
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return count.clamp(min=1)


def check_multiview(z: torch.Tensor, what: str) -> None:
    """Raise ValueError unless ``z`` has an even number of rows (rows 2k, 2k+1 = views of k)."""
    if z.shape[0] % 2:
        raise ValueError(
            f"{what} needs a multi-view batch of 2N rows (rows 2k, 2k+1 = views of sample k), "
            f"got {z.shape[0]} rows"
        )


def zero_loss(z: torch.Tensor) -> torch.Tensor:
    """A zero loss still connected to the graph of ``z`` (so ``backward()`` works)."""
    return z.sum() * 0.0
