"""Small shared pieces of the loss modules: the base class and numerical helpers."""

from __future__ import annotations

import torch
from torch import nn


class Loss(nn.Module):
    """Base of the ser-cl loss modules.

    Class attributes tell the training loop how to call a loss:
      ``input``: "logits" (classifier output) or "embeddings" (L2-normalised z);
      ``needs_labels``: whether the labels are used;
      ``multiview``: whether the batch must be a multi-view batch (rows 2k, 2k+1 = views of k).
    ``set_epoch(epoch, n_epochs)`` is called by the training loop at the start of each epoch;
    only losses with an epoch schedule (triplet "semihard-hard") do anything with it.
    """

    name: str = ""
    input: str = "embeddings"
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


def very_negative(dtype: torch.dtype) -> float:
    """A finite stand-in for -inf in masked log-sum-exps.

    Finite so that rows with nothing left (no negatives, a batch of one) give finite values
    and finite (zero) gradients instead of the NaNs that ``-inf - -inf`` produces.
    """
    return torch.finfo(dtype).min


def zero_loss(z: torch.Tensor) -> torch.Tensor:
    """A zero loss still connected to the graph of ``z`` (so ``backward()`` works)."""
    return z.sum() * 0.0
