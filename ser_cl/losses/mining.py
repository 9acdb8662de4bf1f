"""Pair and triplet selection for the supervised contrastive losses (thesis 3.1.3, 4.4.2.1).

Mining is kept apart from the losses (the pytorch-metric-learning habit): this module only
decides *which* pairs / triplets take part, the loss modules decide what they cost.
Everything is vectorised over the batch with dense masks: ``[B, B]`` for pairs and
``[B, B, B]`` for triplets indexed ``[a, p, n]`` (anchor, positive, negative).

Definitions (thesis 3.1.3 / 4.4.2), for labels ``y`` of a batch with indices ``A``:

    P(a) = {p in A : y_p == y_a, p != a}      (same-class others)
    N(a) = {n in A : y_n != y_a}              (other-class samples)
    T_a  = P(a) x N(a)                        (all triplets of anchor a)

With cosine similarities ``s_ij = z_i . z_j`` of L2-normalised embeddings and the gap
``g = s_ap - s_an`` (how much closer the positive is than the negative), the thesis (4.4.2.1)
splits the triplets of a margin ``m`` into

    easy:       g > m                 (already satisfy the margin; zero loss)
    semi-hard:  0 < g < m             (positive closer, but by less than the margin)
    hard:       g <= 0                (negative at least as close as the positive)
    all:        g < m  = semi-hard + hard = T'_a, every triplet that violates the margin

Ties: the thesis writes ``s_ap < s_an`` for "hard"; here a tie ``g == 0`` counts as hard (as in
pytorch-metric-learning's TripletMarginMiner), so that "all" is exactly the disjoint union of
"semihard" and "hard" (a tie still has loss ``m > 0``; with collapsed embeddings every triplet is
such a tie). ``g == m`` has zero loss and is in no set (the thesis' strict ``<`` in T'_a).

The mixed strategy of 4.4.2.1 ("semi-hard for the first 80% of the epochs, then hard") is a
schedule over epochs: ``mining_for_epoch("semihard-hard", epoch, n_epochs)``.

Host synchronisation: the training path (``mine_triplets`` / ``select_triplets`` and the masks,
used by ``triplet_loss``) is dense masks only, with no data-dependent shapes and no host reads;
the schedule is plain Python on epoch numbers. Only ``triplet_indices`` (a list of the selected
triplets, whose length depends on the data) calls ``nonzero`` and thus waits for the device; it
serves tests and analysis, never the loss.
"""

from __future__ import annotations

import math

import torch

from .base import full_precision

MINING_STRATEGIES = ("all", "semihard", "hard")
"""Triplet sets a single batch can be mined for (4.4.2.1)."""

MINING_SCHEDULES = MINING_STRATEGIES + ("semihard-hard",)
"""Everything ``TripletLoss(mining=...)`` accepts: a strategy or the semi-hard -> hard schedule."""


def check_batch(z: torch.Tensor, labels: torch.Tensor | None) -> None:
    """Raise ValueError unless ``z`` is ``[B, D]`` and ``labels`` (if given) is ``[B]`` integer."""
    if z.dim() != 2:
        raise ValueError(f"embeddings must be a [B, D] tensor, got shape {tuple(z.shape)}")
    if labels is None:
        return
    if labels.dim() != 1 or labels.shape[0] != z.shape[0]:
        raise ValueError(
            f"labels must be a [B] tensor matching embeddings [B, D] = {tuple(z.shape)}, "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` bool: ``mask[a, p]`` is True iff ``p`` in P(a) (same label, ``p != a``)."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye


def negative_mask(labels: torch.Tensor) -> torch.Tensor:
    """``[B, B]`` bool: ``mask[a, n]`` is True iff ``n`` in N(a) (different label)."""
    return labels.unsqueeze(0) != labels.unsqueeze(1)


def valid_triplet_mask(labels: torch.Tensor) -> torch.Tensor:
    """``[B, B, B]`` bool: ``mask[a, p, n]`` iff ``(p, n)`` in T_a = P(a) x N(a)."""
    return positive_mask(labels).unsqueeze(2) & negative_mask(labels).unsqueeze(1)


def triplet_gaps(similarity: torch.Tensor) -> torch.Tensor:
    """``[B, B, B]`` tensor ``g[a, p, n] = s_ap - s_an`` from a ``[B, B]`` similarity matrix."""
    return similarity.unsqueeze(2) - similarity.unsqueeze(1)


@full_precision
def mine_triplets(
    z: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, strategy: str = "all"
) -> torch.Tensor:
    """Mask ``[B, B, B]`` (bool) of the triplets ``(a, p, n)`` selected by ``strategy``.

    ``z``: L2-normalised ``[B, D]`` embeddings (similarity = dot product); ``labels``: ``[B]``.
    ``strategy``: "all" (every margin-violating triplet, ``s_ap - s_an < m``), "semihard"
    (``0 < s_ap - s_an < m``) or "hard" (``s_ap - s_an <= 0``); see the module docstring.
    Selection is not differentiated (computed on detached similarities).
    """
    check_batch(z, labels)
    if strategy not in MINING_STRATEGIES:
        hint = (
            " (a schedule: pick the epoch's strategy with mining_for_epoch())"
            if strategy in MINING_SCHEDULES
            else ""
        )
        raise ValueError(f"unknown triplet mining {strategy!r}{hint}; expected one of {MINING_STRATEGIES}")
    if margin < 0:
        raise ValueError(f"triplet margin must be >= 0, got {margin}")
    with torch.no_grad():
        zd = z.detach()
        gaps = triplet_gaps(zd @ zd.T)
        return select_triplets(gaps, valid_triplet_mask(labels), margin, strategy)


def select_triplets(gaps: torch.Tensor, valid: torch.Tensor, margin: float, strategy: str) -> torch.Tensor:
    """Apply a strategy's condition on precomputed gaps ``s_ap - s_an`` within the valid triplets."""
    if strategy == "all":
        chosen = gaps < margin
    elif strategy == "semihard":
        chosen = (gaps > 0) & (gaps < margin)
    elif strategy == "hard":
        chosen = gaps <= 0
    else:
        raise ValueError(f"unknown triplet mining {strategy!r}; expected one of {MINING_STRATEGIES}")
    return chosen & valid


def triplet_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(anchors, positives, negatives)`` index tensors of a ``[B, B, B]`` triplet mask.

    The same layout as pytorch-metric-learning's ``indices_tuple`` for triplet losses. Its size
    depends on the data (``nonzero``: a host-device sync on CUDA), so the losses use the dense
    mask itself; this is for tests and analysis.
    """
    a, p, n = mask.nonzero(as_tuple=True)
    return a, p, n


def mining_for_epoch(strategy: str, epoch: int, n_epochs: int, hard_fraction: float = 0.2) -> str:
    """The triplet mining strategy to use in (0-based) ``epoch`` of ``n_epochs``.

    "semihard-hard" (thesis 4.4.2.1) is semi-hard for the first ``1 - hard_fraction`` of the
    epochs (80% by default) and hard afterwards: epochs ``0 .. k-1`` are "semihard" with
    ``k = round_half_up(n_epochs * (1 - hard_fraction))`` (50 epochs -> 0..39 semihard,
    40..49 hard). Any other strategy is returned unchanged.
    """
    if strategy not in MINING_SCHEDULES:
        raise ValueError(f"unknown triplet mining {strategy!r}; expected one of {MINING_SCHEDULES}")
    if strategy != "semihard-hard":
        return strategy
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    if epoch < 0:
        raise ValueError(f"epoch is 0-based and must be >= 0, got {epoch}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    switch_epoch = math.floor(n_epochs * (1.0 - hard_fraction) + 0.5)
    return "semihard" if epoch < switch_epoch else "hard"
