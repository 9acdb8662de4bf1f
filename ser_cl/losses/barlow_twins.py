"""Barlow Twins (Zbontar, Jing, Misra, LeCun, Deny 2021, "Barlow Twins: Self-Supervised Learning
via Redundancy Reduction", ICML 2021; arXiv:2103.03230), on a multi-view batch.

Not one of the thesis' losses: a non-contrastive alternative to its self-supervised NT-Xent
(thesis 3.1.4.1, 4.4.4), with the same batch layout (rows 2k, 2k+1 = two views of sample k).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from .base import Loss, as_loss_dtype, check_multiview, full_precision, zero_loss
from .gather import gather_rows
from .mining import check_batch


def standardize_batch(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` per column over the batch, ``var`` biased (divided by N).

    What ``nn.BatchNorm1d(D, affine=False)`` computes in training mode, the normalisation of the
    official Barlow Twins code.
    """
    centered = x - x.mean(dim=0, keepdim=True)
    var = (centered * centered).mean(dim=0, keepdim=True)
    return centered / torch.sqrt(var + eps)


@full_precision
def barlow_twins_terms(z: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """``(on_diagonal, off_diagonal)`` = ``(sum_i (1 - C_ii)^2, sum_{i != j} C_ij^2)`` of a
    multi-view batch ``z`` ``[2N, D]`` (no gathering; see ``barlow_twins_loss``)."""
    check_batch(z, None)
    check_multiview(z, "Barlow Twins")
    z = as_loss_dtype(z)
    n = z.shape[0] // 2
    if n == 0:
        zero = zero_loss(z)
        return zero, zero
    za = standardize_batch(z[0::2], eps)
    zb = standardize_batch(z[1::2], eps)
    c = (za.T @ zb) / n  # [D, D] cross-correlation
    eye = torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
    on_diag = (torch.diagonal(c) - 1.0).pow(2).sum()
    off_diag = c.pow(2).masked_fill(eye, 0.0).sum()
    return on_diag, off_diag


@full_precision
def barlow_twins_loss(
    z: torch.Tensor,
    lambd: float = 5e-3,
    eps: float = 1e-5,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Barlow Twins loss (Zbontar et al. 2021) of a multi-view batch ``z`` ``[2N, D]`` (rows 2k,
    2k+1 = views of sample k).

        z^A = rows 0, 2, 4, ...;  z^B = rows 1, 3, 5, ...          (N x D each)
        zhat_b,i = (z_b,i - mean_b z_b,i) / sqrt(var_b z_b,i + eps)   per view and dimension i,
                   var biased (1/N), as BatchNorm1d(affine=False) in the official code
        C_ij = 1/N sum_b zhat^A_b,i zhat^B_b,j                       (cross-correlation, D x D)
        L    = sum_i (1 - C_ii)^2 + lambd * sum_i sum_{j != i} C_ij^2

    Paper eq. (1)-(2); ``lambd`` = 5e-3 as in the paper (the official code's default is 0.0051).
    The paper's pseudo-code (Algorithm 1) standardises with ``torch.std`` (unbiased, no eps),
    which scales C by N/(N-1); this follows the official code (BatchNorm1d: biased, eps 1e-5),
    and ``eps`` keeps a constant dimension (or N = 1) finite: its zhat is 0, so C_ii = 0.

    Input: any ``z``. The paper applies the loss to the output of a projector (3-layer MLP with
    BatchNorm, 8192 wide), not to L2-normalised embeddings; the training path should feed the
    un-normalised projection (``Loss.normalized_input`` is False). The standardisation makes the
    loss invariant (up to eps) to an affine map of each dimension, not to L2 normalisation of
    the rows, which mixes the dimensions.
    ``gather_distributed``: standardise and correlate over the batches of all processes (the
    official code's SyncBatchNorm + all_reduce of C); on one process a no-op. An empty batch
    gives a zero connected to the graph.
    """
    check_batch(z, None)
    check_multiview(z, "Barlow Twins")
    z = as_loss_dtype(z)
    if gather_distributed:
        z = gather_rows(z, shard_sizes)
    on_diag, off_diag = barlow_twins_terms(z, eps)
    return on_diag + lambd * off_diag


class BarlowTwinsLoss(Loss):
    """Barlow Twins (Zbontar et al. 2021, ICML; arXiv:2103.03230) on a multi-view batch ``[2N, D]``
    (rows 2k, 2k+1 = two augmented views of sample k, as in the thesis' self-supervised NT-Xent,
    3.1.4.1 / 4.4.4), labels ignored:

        C_ij = 1/N sum_b zhat^A_b,i zhat^B_b,j,   zhat = per-dimension batch standardisation
               (biased variance + eps, i.e. BatchNorm1d(affine=False) as in the official code)
        L    = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2

    Takes un-normalised projections (not L2-normalised z; ``normalized_input = False``).
    Config name ``"barlow_twins"``; parameters (named as the ``LossConfig`` fields)
    ``barlow_lambda`` (lambd, default 5e-3, the paper's), ``barlow_eps`` (default 1e-5,
    BatchNorm1d's) and ``gather_distributed`` (default False; ``gather.py``).
    """

    name = "barlow_twins"
    needs_labels = False
    multiview = True
    normalized_input = False

    def __init__(self, barlow_lambda: float = 5e-3, barlow_eps: float = 1e-5, gather_distributed: bool = False):
        super().__init__()
        if barlow_lambda < 0:
            raise ValueError(f"Barlow Twins barlow_lambda must be >= 0, got {barlow_lambda}")
        if barlow_eps < 0:
            raise ValueError(f"Barlow Twins barlow_eps must be >= 0, got {barlow_eps}")
        self.lambd = float(barlow_lambda)
        self.eps = float(barlow_eps)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        shard_sizes: Optional[Sequence[int]] = None,
    ) -> torch.Tensor:
        return barlow_twins_loss(
            z, self.lambd, self.eps, gather_distributed=self.gather_distributed, shard_sizes=shard_sizes
        )

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}, eps={self.eps}, gather_distributed={self.gather_distributed}"
