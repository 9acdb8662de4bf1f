"""VICReg (Bardes, Ponce, LeCun 2022, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022; arXiv:2105.04906), on a multi-view batch.

Not one of the thesis' losses: a non-contrastive alternative to its self-supervised NT-Xent
(thesis 3.1.4.1, 4.4.4), with the same batch layout (rows 2k, 2k+1 = two views of sample k).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .base import Loss, as_loss_dtype, check_multiview, full_precision, zero_loss
from .gather import gather_rows
from .mining import check_batch


def _variance_and_covariance(x: torch.Tensor, gamma: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v(x), c(x))`` of one view ``x`` ``[N, D]``: the hinge on the std and the covariance term."""
    n, d = x.shape
    centered = x - x.mean(dim=0, keepdim=True)
    denominator = max(n - 1, 1)  # unbiased; N = 1 -> variance 0 instead of 0 / 0
    var = (centered * centered).sum(dim=0) / denominator
    variance_term = F.relu(gamma - torch.sqrt(var + eps)).mean()
    cov = (centered.T @ centered) / denominator
    eye = torch.eye(d, dtype=torch.bool, device=x.device)
    covariance_term = cov.pow(2).masked_fill(eye, 0.0).sum() / d
    return variance_term, covariance_term


@full_precision
def vicreg_terms(
    z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(invariance, variance, covariance)`` of a multi-view batch ``z`` ``[2N, D]`` (no gathering):

        invariance = 1/(N D) sum_b ||z^A_b - z^B_b||^2
        variance   = (v(z^A) + v(z^B)) / 2          (the mean over the two views)
        covariance = c(z^A) + c(z^B)                (the sum over the two views)

    with ``v`` and ``c`` as in ``vicreg_loss``.
    """
    check_batch(z, None)
    check_multiview(z, "VICReg")
    z = as_loss_dtype(z)
    if z.shape[0] == 0:
        zero = zero_loss(z)
        return zero, zero, zero
    za, zb = z[0::2], z[1::2]
    invariance = F.mse_loss(za, zb)
    var_a, cov_a = _variance_and_covariance(za, gamma, eps)
    var_b, cov_b = _variance_and_covariance(zb, gamma, eps)
    return invariance, (var_a + var_b) / 2, cov_a + cov_b


@full_precision
def vicreg_loss(
    z: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    *,
    gather_distributed: bool = False,
    shard_sizes: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """VICReg loss (Bardes, Ponce, LeCun 2022) of a multi-view batch ``z`` ``[2N, D]`` (rows 2k,
    2k+1 = views of sample k).

    With ``Z = z^A`` (rows 0, 2, ...) and ``Z' = z^B`` (rows 1, 3, ...), N x D each:

        s(Z, Z') = 1/(N D) sum_b ||z_b - z'_b||^2                         (invariance: MSE)
        v(Z)     = 1/D sum_j max(0, gamma - sqrt(Var(z_.j) + eps))          (Var unbiased, 1/(N-1))
        c(Z)     = 1/D sum_{i != j} Cov(Z)_ij^2,  Cov(Z) = 1/(N-1) sum_b (z_b - zbar)(z_b - zbar)^T
        L        = sim_weight * s + var_weight * (v(Z) + v(Z')) / 2 + cov_weight * (c(Z) + c(Z'))

    This is the official code (facebookresearch/vicreg, ``main_vicreg.py``, ``VICReg.forward``):
    its ``std_loss`` is the *mean* of the two views' hinge terms, its ``cov_loss`` the *sum*. The
    paper's eq. (6) and its pseudo-code (Algorithm 1) write ``mu * [v(Z) + v(Z')]`` (a sum), i.e.
    the paper's formula with mu equals this loss with ``var_weight = 2 * mu``. The defaults 25 / 25
    / 1 (lambda, mu, nu) and gamma = 1, eps = 1e-4 are the paper's and the code's. For N = 1 the
    1/(N-1) is replaced by 1 (variance and covariance 0: finite instead of 0/0).

    Input: any ``z``. The paper applies the loss to the output of an "expander" (3-layer MLP,
    8192 wide), not to L2-normalised embeddings: with unit-norm rows in D dimensions the per
    dimension std is about 1/sqrt(D), far below gamma = 1, so the variance hinge can never be
    met. The training path should feed the un-normalised projection (``Loss.normalized_input``
    is False). ``gather_distributed``: all three terms over the batches of all processes (the
    official code gathers for v and c; its invariance term is local, which DDP's averaging
    makes global for equal shards). An empty batch gives a zero connected to the graph.
    """
    check_batch(z, None)
    check_multiview(z, "VICReg")
    z = as_loss_dtype(z)
    if gather_distributed:
        z = gather_rows(z, shard_sizes)
    invariance, variance, covariance = vicreg_terms(z, gamma, eps)
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance


class VICRegLoss(Loss):
    """VICReg (Bardes, Ponce, LeCun 2022, ICLR; arXiv:2105.04906) on a multi-view batch ``[2N, D]``
    (rows 2k, 2k+1 = two augmented views of sample k, as in the thesis' self-supervised NT-Xent,
    3.1.4.1 / 4.4.4), labels ignored:

        L = sim_weight * MSE(Z, Z') + var_weight * (v(Z) + v(Z')) / 2 + cov_weight * (c(Z) + c(Z'))

    with the variance hinge ``v`` (gamma, eps, unbiased variance) and covariance term ``c`` of
    ``vicreg_loss``; the /2 on the variance terms is the official code's (the paper's eq. (6)
    sums them). Takes un-normalised projections (``normalized_input = False``).
    Config name ``"vicreg"``; parameters (named as the ``LossConfig`` fields) ``vicreg_sim``
    (sim_weight, lambda) = 25, ``vicreg_var`` (var_weight, mu) = 25, ``vicreg_cov``
    (cov_weight, nu) = 1, ``vicreg_gamma`` = 1, ``vicreg_eps`` = 1e-4 (the paper's values)
    and ``gather_distributed`` (default False; ``gather.py``).
    """

    name = "vicreg"
    needs_labels = False
    multiview = True
    normalized_input = False

    def __init__(
        self,
        vicreg_sim: float = 25.0,
        vicreg_var: float = 25.0,
        vicreg_cov: float = 1.0,
        vicreg_gamma: float = 1.0,
        vicreg_eps: float = 1e-4,
        gather_distributed: bool = False,
    ):
        super().__init__()
        for key, value in (("vicreg_sim", vicreg_sim), ("vicreg_var", vicreg_var), ("vicreg_cov", vicreg_cov)):
            if value < 0:
                raise ValueError(f"VICReg {key} must be >= 0, got {value}")
        if vicreg_eps <= 0:
            raise ValueError(f"VICReg vicreg_eps must be > 0 (sqrt of a zero variance), got {vicreg_eps}")
        self.sim_weight = float(vicreg_sim)
        self.var_weight = float(vicreg_var)
        self.cov_weight = float(vicreg_cov)
        self.gamma = float(vicreg_gamma)
        self.eps = float(vicreg_eps)
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        shard_sizes: Optional[Sequence[int]] = None,
    ) -> torch.Tensor:
        return vicreg_loss(
            z,
            self.sim_weight,
            self.var_weight,
            self.cov_weight,
            self.gamma,
            self.eps,
            gather_distributed=self.gather_distributed,
            shard_sizes=shard_sizes,
        )

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, cov_weight={self.cov_weight}, "
            f"gamma={self.gamma}, eps={self.eps}, gather_distributed={self.gather_distributed}"
        )
