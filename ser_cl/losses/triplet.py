"""Triplet loss with mining and its smooth (temperature) variant (thesis 3.1.3.2, 4.4.2.1-2).

Both work on L2-normalised embeddings ``z`` ``[B, D]`` (cosine similarity = dot product; not
checked) with int64 labels ``[B]``, and consider the triplets ``(a, p, n)`` with ``p`` in P(a)
(same class, ``p != a``) and ``n`` in N(a) (other class); see ``mining.py``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import Loss, as_loss_dtype, check_temperature, full_precision, safe_count
from .gather import gather_batch
from .mining import (
    MINING_SCHEDULES,
    MINING_STRATEGIES,
    check_batch,
    mining_for_epoch,
    select_triplets,
    triplet_gaps,
    valid_triplet_mask,
)


@full_precision
def triplet_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.2,
    mining: str = "all",
    triplets: torch.Tensor | None = None,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Cosine triplet loss averaged over the mined triplets with non-zero loss (4.4.2.1).

        L = 1/|M'| sum_{(a,p,n) in M} max(0, z_a.z_n - z_a.z_p + m)

    ``M`` is the mined set (``mining`` = "all" | "semihard" | "hard", or an explicit
    ``[B, B, B]`` bool mask ``triplets``), ``M'`` its triplets with positive loss. With
    mining "all", ``M = M'`` is the thesis' T' (every margin-violating triplet). If no triplet
    has a positive loss the result is a zero that is still connected to the graph of ``z``
    (``0 / max(|M'|, 1)``: mining and counting are dense masks, no host read).

    ``gather_distributed``: mine and average over the batches of all processes (``gather.py``;
    an explicit ``triplets`` mask must then be ``[B, B, B]`` for the global batch).
    """
    check_batch(z, labels)
    if margin < 0:
        raise ValueError(f"triplet margin must be >= 0, got {margin}")
    z = as_loss_dtype(z)
    if gather_distributed:
        z, labels = gather_batch(z, labels, shard_sizes)
    similarity = z @ z.T
    gaps = triplet_gaps(similarity)  # g[a, p, n] = s_ap - s_an
    if triplets is None:
        if mining not in MINING_STRATEGIES:
            hint = (
                " (a schedule: use TripletLoss.set_epoch() or mining_for_epoch())"
                if mining in MINING_SCHEDULES
                else ""
            )
            raise ValueError(f"unknown triplet mining {mining!r}{hint}; expected one of {MINING_STRATEGIES}")
        triplets = select_triplets(gaps.detach(), valid_triplet_mask(labels), margin, mining)
    elif triplets.shape != gaps.shape or triplets.dtype != torch.bool:
        raise ValueError(f"triplets must be a bool mask of shape {tuple(gaps.shape)}")
    losses = F.relu(margin - gaps)  # max(0, s_an - s_ap + m)
    counted = triplets & (losses.detach() > 0)
    return torch.where(counted, losses, torch.zeros_like(losses)).sum() / safe_count(counted)


@full_precision
def smooth_triplet_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.5,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Smooth triplet loss averaged over all triplets T = union_a P(a) x N(a) (4.4.2.2).

        L = 1/|T| sum_{(a,p,n) in T} log(1 + exp((z_a.z_n - z_a.z_p) / tau))

    computed as ``softplus`` for stability. Zero (connected to the graph) if there are no triplets
    (``0 / max(|T|, 1)``; no host read). ``gather_distributed``: over the batches of all processes.
    """
    check_batch(z, labels)
    tau = check_temperature(tau)
    z = as_loss_dtype(z)
    if gather_distributed:
        z, labels = gather_batch(z, labels, shard_sizes)
    gaps = triplet_gaps(z @ z.T)  # s_ap - s_an
    valid = valid_triplet_mask(labels)
    # threshold 40 (not the default 20): above it softplus is replaced by its argument, an
    # error of e^-40, below float64 resolution; the default's e^-20 is visible at tau = 0.01
    losses = F.softplus(-gaps / tau, beta=1.0, threshold=40.0)
    return torch.where(valid, losses, torch.zeros_like(losses)).sum() / safe_count(valid)


class TripletLoss(Loss):
    """Triplet loss with cosine similarity and triplet mining (thesis 3.1.3.2, 4.4.2.1).

        L = 1/|M'| sum_{(a,p,n) in M} max(0, z_a.z_n - z_a.z_p + m)

    over the mined triplets ``M`` whose loss is non-zero (``M'``); z L2-normalised.
    Config name ``"triplet"``; parameters:
      ``margin`` (m, default 0.2; thesis sweep {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2}),
      ``mining``: "all" (semi-hard + hard = every margin-violating triplet), "semihard",
        "hard", or "semihard-hard" (semi-hard for the first ``1 - hard_fraction`` of the
        epochs, then hard; driven by ``set_epoch``, semi-hard until it is first called),
      ``hard_fraction`` (default 0.2, only for "semihard-hard"),
      ``gather_distributed`` (default False): triplets of the batches of all processes.
    """

    name = "triplet"

    def __init__(
        self, margin: float = 0.2, mining: str = "all", hard_fraction: float = 0.2, gather_distributed: bool = False
    ):
        super().__init__()
        if mining not in MINING_SCHEDULES:
            raise ValueError(f"unknown triplet mining {mining!r}; expected one of {MINING_SCHEDULES}")
        if margin < 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.mining = mining
        self.hard_fraction = float(hard_fraction)
        self.gather_distributed = bool(gather_distributed)
        self.current_mining = mining_for_epoch(mining, 0, 1, 0.0)

    def set_epoch(self, epoch: int, n_epochs: int) -> None:
        """Select this epoch's mining strategy (only changes anything for "semihard-hard")."""
        self.current_mining = mining_for_epoch(self.mining, epoch, n_epochs, self.hard_fraction)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, shard_sizes: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        return triplet_loss(
            z,
            labels,
            self.margin,
            self.current_mining,
            gather_distributed=self.gather_distributed,
            shard_sizes=shard_sizes,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, mining={self.mining!r}, current_mining={self.current_mining!r}, "
            f"gather_distributed={self.gather_distributed}"
        )


class SmoothTripletLoss(Loss):
    """Smooth triplet loss (thesis 3.1.3.2, 4.4.2.2), over all triplets T of the batch:

        L = 1/|T| sum_{(a,p,n) in T} log(1 + exp((z_a.z_n - z_a.z_p) / tau))

    z L2-normalised. Config name ``"smooth_triplet"``; parameters ``tau`` (default 0.5, the
    thesis' best; sweep {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}) and
    ``gather_distributed`` (default False): triplets of the batches of all processes.
    """

    name = "smooth_triplet"

    def __init__(self, tau: float = 0.5, gather_distributed: bool = False):
        super().__init__()
        self.tau = check_temperature(tau)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, shard_sizes: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        return smooth_triplet_loss(
            z, labels, self.tau, gather_distributed=self.gather_distributed, shard_sizes=shard_sizes
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, gather_distributed={self.gather_distributed}"
