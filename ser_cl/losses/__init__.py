"""Losses of the thesis (Chapter 3, Section 4.4): cross-entropy and the contrastive losses.

Each loss is a plain function plus an ``nn.Module`` wrapper (pytorch-metric-learning's habit);
triplet mining lives apart in ``mining.py``. Contrastive losses take L2-normalised
embeddings ``z`` ``[B, D]`` and int64 labels ``[B]``; cross-entropy takes logits ``[B, C]``;
Barlow Twins and VICReg take un-normalised projections of a multi-view batch.

    build_loss(name, **params) -> Loss module, called as ``loss(z_or_logits, labels)``

Names (the config's ``loss.name``) and parameters:
    "ce"              CrossEntropy()                        (logits)
    "triplet"         TripletLoss(margin=0.2, mining="all", hard_fraction=0.2)
    "smooth_triplet"  SmoothTripletLoss(tau=0.5)
    "ntxent"          SupervisedNTXentLoss(tau=0.1)
    "supcon"          SupConLoss(tau=0.1)                    (L_out)
    "selfsup_ntxent"  SelfSupNTXentLoss(tau=0.5)             (multi-view batch, labels ignored)
    "barlow_twins"    BarlowTwinsLoss(barlow_lambda=5e-3, barlow_eps=1e-5)
                                                            (multi-view, labels ignored, not normalised)
    "vicreg"          VICRegLoss(vicreg_sim=25, vicreg_var=25, vicreg_cov=1, vicreg_gamma=1,
                                 vicreg_eps=1e-4)           (multi-view, labels ignored, not normalised)
Parameters are named as the ``LossConfig`` fields that set them (``barlow_lambda`` is the
paper's lambda, ``vicreg_sim`` / ``vicreg_var`` / ``vicreg_cov`` its lambda / mu / nu).
Every loss but "ce" also takes ``gather_distributed=False``: with torch.distributed initialised
and several processes, the loss is computed over the batches of all processes (``gather.py``),
and its ``forward`` takes an optional ``shard_sizes`` (every rank's row count).

No loss reads device values on the host in forward or backward (no ``.item()``, ``nonzero``
or boolean indexing), so none stalls a CUDA step; ``triplet_indices`` is the one exception
(a data-dependent list, for tests and analysis only).
"""

from __future__ import annotations

import inspect

from .barlow_twins import BarlowTwinsLoss, barlow_twins_loss, barlow_twins_terms
from .base import Loss
from .cross_entropy import CrossEntropy, cross_entropy_loss
from .gather import gather_batch, gather_labels, gather_rows, strided_shard_sizes
from .mining import (
    MINING_SCHEDULES,
    MINING_STRATEGIES,
    mine_triplets,
    mining_for_epoch,
    negative_mask,
    positive_mask,
    triplet_indices,
    valid_triplet_mask,
)
from .ntxent import SelfSupNTXentLoss, SupervisedNTXentLoss, selfsup_ntxent_loss, supervised_ntxent_loss
from .supcon import SupConLoss, supcon_loss
from .triplet import SmoothTripletLoss, TripletLoss, smooth_triplet_loss, triplet_loss
from .vicreg import VICRegLoss, vicreg_loss, vicreg_terms

LOSS_CLASSES: dict[str, type[Loss]] = {
    "ce": CrossEntropy,
    "triplet": TripletLoss,
    "smooth_triplet": SmoothTripletLoss,
    "ntxent": SupervisedNTXentLoss,
    "supcon": SupConLoss,
    "selfsup_ntxent": SelfSupNTXentLoss,
    "barlow_twins": BarlowTwinsLoss,
    "vicreg": VICRegLoss,
}

LOSS_NAMES: tuple[str, ...] = tuple(LOSS_CLASSES)


def loss_parameters(name: str) -> dict[str, object]:
    """The parameters ``build_loss(name, ...)`` accepts, with their defaults."""
    cls = _loss_class(name)
    signature = inspect.signature(cls.__init__)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in list(signature.parameters.values())[1:] if p.kind in named}


def build_loss(name: str, **params: object) -> Loss:
    """Build the loss module called ``name`` (one of ``LOSS_NAMES``) with ``params``.

    Raises ValueError for an unknown name or a parameter the loss does not take (so a typo in
    an experiment file fails loudly instead of silently using a default).
    """
    cls = _loss_class(name)
    accepted = loss_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"loss {name!r} does not take parameter(s) {unknown}; it takes {sorted(accepted) or 'none'}"
        )
    return cls(**params)


def _loss_class(name: str) -> type[Loss]:
    try:
        return LOSS_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}") from None


__all__ = [
    "LOSS_CLASSES",
    "LOSS_NAMES",
    "MINING_SCHEDULES",
    "MINING_STRATEGIES",
    "BarlowTwinsLoss",
    "CrossEntropy",
    "Loss",
    "SelfSupNTXentLoss",
    "SmoothTripletLoss",
    "SupConLoss",
    "SupervisedNTXentLoss",
    "TripletLoss",
    "VICRegLoss",
    "barlow_twins_loss",
    "barlow_twins_terms",
    "build_loss",
    "cross_entropy_loss",
    "gather_batch",
    "gather_labels",
    "gather_rows",
    "loss_parameters",
    "mine_triplets",
    "mining_for_epoch",
    "negative_mask",
    "positive_mask",
    "selfsup_ntxent_loss",
    "smooth_triplet_loss",
    "strided_shard_sizes",
    "supcon_loss",
    "supervised_ntxent_loss",
    "triplet_indices",
    "triplet_loss",
    "valid_triplet_mask",
    "vicreg_loss",
    "vicreg_terms",
]
