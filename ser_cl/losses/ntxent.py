"""NT-Xent losses: supervised (N-pair style, thesis 3.1.3.3 / 4.4.2.3) and self-supervised
(SimCLR, thesis 3.1.4.1 / 4.4.4).

Embeddings ``z`` ``[B, D]`` are assumed L2-normalised (similarity = dot product; not checked).
Log-sum-exps keep them finite at the smallest temperature of the sweep (tau = 0.01).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import (
    Loss,
    as_loss_dtype,
    check_multiview,
    check_temperature,
    full_precision,
    safe_count,
    very_negative,
    zero_loss,
)
from .gather import gather_batch, gather_rows
from .mining import check_batch, negative_mask, positive_mask


@full_precision
def supervised_ntxent_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.1,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Supervised NT-Xent (thesis 4.4.2.3, eq. 3.17): one positive per term, other classes below.

        l_ap = -log( e^{s_ap} / (e^{s_ap} + sum_{n in N(a)} e^{s_an}) ),   s = z.z / tau
        L    = 1/|A+| sum_{a in A+} 1/|P(a)| sum_{p in P(a)} l_ap

    ``A+`` = the anchors with at least one positive: an anchor alone in its class has no term
    and is left out of the average (the thesis' 1/|A| assumes every anchor has one). An anchor
    without negatives (one-class batch) gives ``l_ap = -log 1 = 0``. No anchor with a positive
    -> a zero connected to the graph (``0 / max(|A+|, 1)``; no host read of ``|A+|``).

    ``gather_distributed``: compute the loss over the batches of all processes (``gather.py``);
    ``shard_sizes``: every rank's row count, if known (spares their exchange). No-op on one process.
    """
    check_batch(z, labels)
    tau = check_temperature(tau)
    z = as_loss_dtype(z)
    if gather_distributed:
        z, labels = gather_batch(z, labels, shard_sizes)
    pos = positive_mask(labels)
    has_pos = pos.any(dim=1)
    logits = (z @ z.T) / tau
    # log sum_{n in N(a)} e^{s_an}; ~ -huge (finite) when a has no negatives
    neg_lse = torch.logsumexp(logits.masked_fill(~negative_mask(labels), very_negative(logits.dtype)), dim=1, keepdim=True)
    pair_losses = torch.logaddexp(logits, neg_lse) - logits  # l_aj for every j; used where j in P(a)
    pair_losses = torch.where(pos, pair_losses, torch.zeros_like(pair_losses))
    per_anchor = pair_losses.sum(dim=1) / safe_count(pos, dim=1)
    return per_anchor.sum() / safe_count(has_pos)


@full_precision
def selfsup_ntxent_loss(
    z: torch.Tensor,
    tau: float = 0.5,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Self-supervised NT-Xent of SimCLR (thesis 3.1.4.1, 4.4.4) on a multi-view batch.

    Rows ``2k`` and ``2k+1`` of ``z`` ``[2N, D]`` are the two views of sample k; labels are
    not used. With ``j(i)`` the partner of row ``i`` (``i xor 1``):

        l_i = -log( e^{s_{i,j(i)}} / sum_{k != i} e^{s_ik} ),   s = z.z / tau
        L   = 1/(2N) sum_i l_i

    (the denominator runs over all 2N - 1 other rows: the partner and the 2N - 2 negatives).

    ``gather_distributed``: the rows of all processes, concatenated in rank order (each shard is
    itself a multi-view batch, so the views of a sample stay adjacent) -> 2N = all views.
    """
    check_batch(z, None)
    tau = check_temperature(tau)
    check_multiview(z, "self-supervised NT-Xent")
    z = as_loss_dtype(z)
    if gather_distributed:
        z = gather_rows(z, shard_sizes)
    n_rows = z.shape[0]
    if n_rows == 0:
        return zero_loss(z)
    logits = (z @ z.T) / tau
    eye = torch.eye(n_rows, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, very_negative(logits.dtype))
    partner = torch.arange(n_rows, device=z.device) ^ 1
    return F.cross_entropy(logits, partner)


class SupervisedNTXentLoss(Loss):
    """Supervised NT-Xent (thesis 3.1.3.3 eq. 3.17 and 4.4.2.3), z L2-normalised:

        L = 1/|A+| sum_a 1/|P(a)| sum_{p in P(a)} -log( e^{z_a.z_p/tau} /
                (e^{z_a.z_p/tau} + sum_{n in N(a)} e^{z_a.z_n/tau}) )

    ``A+``: anchors with >= 1 positive. Config name ``"ntxent"``; parameters ``tau`` (default
    0.1, the thesis' best; sweep {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}) and
    ``gather_distributed`` (default False: anchors and negatives of all processes, ``gather.py``).
    """

    name = "ntxent"

    def __init__(self, tau: float = 0.1, gather_distributed: bool = False):
        super().__init__()
        self.tau = check_temperature(tau)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, shard_sizes: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        return supervised_ntxent_loss(
            z, labels, self.tau, gather_distributed=self.gather_distributed, shard_sizes=shard_sizes
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, gather_distributed={self.gather_distributed}"


class SelfSupNTXentLoss(Loss):
    """Self-supervised NT-Xent / SimCLR (thesis 3.1.4.1, 4.4.4) on a multi-view batch ``[2N, D]``
    (rows 2k, 2k+1 = two augmented views of sample k), z L2-normalised, labels ignored:

        L = 1/(2N) sum_i -log( e^{z_i.z_j(i)/tau} / sum_{k != i} e^{z_i.z_k/tau} ),  j(i) = i xor 1

    Config name ``"selfsup_ntxent"``; parameters ``tau`` (default 0.5, the thesis' choice) and
    ``gather_distributed`` (default False: the views of all processes, each shard a multi-view
    batch, concatenated in rank order; see ``gather.py``).
    """

    name = "selfsup_ntxent"
    needs_labels = False
    multiview = True

    def __init__(self, tau: float = 0.5, gather_distributed: bool = False):
        super().__init__()
        self.tau = check_temperature(tau)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        shard_sizes: Optional[Sequence[int]] = None,
    ) -> torch.Tensor:
        return selfsup_ntxent_loss(z, self.tau, gather_distributed=self.gather_distributed, shard_sizes=shard_sizes)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, gather_distributed={self.gather_distributed}"
