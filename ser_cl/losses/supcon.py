"""Supervised contrastive loss SupCon, the L_out variant (Khosla et al. 2020; thesis 3.1.4.2,
4.4.2.3, 4.4.2.4, 4.4.3).

Embeddings ``z`` ``[B, D]`` are assumed L2-normalised (similarity = dot product; not checked).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Loss, as_loss_dtype, check_temperature, full_precision, safe_count, very_negative
from .gather import gather_batch
from .mining import check_batch, positive_mask


@full_precision
def supcon_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    tau: float = 0.1,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """SupCon L_out: positives and negatives in the denominator, positives averaged outside the log.

        l_a = 1/|P(a)| sum_{p in P(a)} -log( e^{s_ap} / sum_{k != a} e^{s_ak} ),  s = z.z / tau
        L   = 1/|A+| sum_{a in A+} l_a

    ``sum_{k != a}`` = ``sum_{p' in P(a)} + sum_{n in N(a)}`` (every other sample of the batch).
    ``A+`` = the anchors with at least one positive. The thesis writes L_out as a plain sum over
    anchors; like Khosla et al.'s reference code (and pytorch-metric-learning) this takes the mean,
    which makes the loss scale independent of the batch size. Anchors alone in their class are left
    out (pml does the same; Khosla's current code counts them as 0 in the mean, and also multiplies
    by ``tau / base_temperature``, which is not applied here). No anchor with a positive -> a zero
    connected to the graph (``0 / max(|A+|, 1)``; no host read of ``|A+|``).

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
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    log_denominator = torch.logsumexp(logits.masked_fill(eye, very_negative(logits.dtype)), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    log_prob = torch.where(pos, log_prob, torch.zeros_like(log_prob))
    per_anchor = -log_prob.sum(dim=1) / safe_count(pos, dim=1)
    return per_anchor.sum() / safe_count(has_pos)


class SupConLoss(Loss):
    """SupCon L_out (Khosla et al. 2020; thesis 3.1.4.2, 4.4.2.3), z L2-normalised:

        L = 1/|A+| sum_{a in A+} 1/|P(a)| sum_{p in P(a)}
                -log( e^{z_a.z_p/tau} / (sum_{p' in P(a)} e^{z_a.z_p'/tau} + sum_{n in N(a)} e^{z_a.z_n/tau}) )

    ``A+``: anchors with >= 1 positive (mean over anchors, as in Khosla's code; the thesis writes a
    sum). With a multi-view batch (4.4.2.4) the other view of a sample is one of its positives.
    Config name ``"supcon"``; parameter ``tau`` (default 0.1, the thesis' choice; sweep
    {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10}); ``gather_distributed`` (default False):
    anchors, positives and negatives from the batches of all processes (see ``gather.py``).
    """

    name = "supcon"

    def __init__(self, tau: float = 0.1, gather_distributed: bool = False):
        super().__init__()
        self.tau = check_temperature(tau)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor, shard_sizes: Optional[Sequence[int]] = None
    ) -> torch.Tensor:
        return supcon_loss(
            z, labels, self.tau, gather_distributed=self.gather_distributed, shard_sizes=shard_sizes
        )

    def extra_repr(self) -> str:
        return f"tau={self.tau}, gather_distributed={self.gather_distributed}"
