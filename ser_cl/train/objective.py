"""What one training step minimises, for every stage of the thesis.

- ``ce`` (train / finetune): L = CE + lambda * SupCon + beta * self-supervised NT-Xent
  (thesis 4.4.1, 4.4.3 and 4.4.5; lambda = ``loss.supcon_weight``, beta = ``loss.selfsup_weight``).
- any contrastive ``loss.name`` (pretrain): that loss on the L2-normalised embeddings z,
  with the triplet mining strategy of the current epoch (thesis 4.4.2, 4.4.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from ser_cl.config import LossConfig
from ser_cl.losses import (
    cross_entropy_loss,
    mining_for_epoch,
    selfsup_ntxent_loss,
    smooth_triplet_loss,
    supcon_loss,
    supervised_ntxent_loss,
    triplet_loss,
)


@dataclass
class StepOutput:
    loss: torch.Tensor
    parts: Dict[str, torch.Tensor]  # each term, detached (summed on the device; no host sync)
    logits: Optional[torch.Tensor]  # classifier outputs (None when there is no head)


def contrastive_term(cfg: LossConfig, z: torch.Tensor, labels: torch.Tensor, epoch: int, n_epochs: int) -> torch.Tensor:
    """The pretraining loss named by ``cfg.name`` on normalised embeddings ``z``."""
    if cfg.name == "triplet":
        mining = mining_for_epoch(cfg.mining, epoch, n_epochs, cfg.hard_fraction)
        return triplet_loss(z, labels, margin=cfg.margin, mining=mining)
    if cfg.name == "smooth_triplet":
        return smooth_triplet_loss(z, labels, tau=cfg.tau)
    if cfg.name == "ntxent":
        return supervised_ntxent_loss(z, labels, tau=cfg.tau)
    if cfg.name == "supcon":
        return supcon_loss(z, labels, tau=cfg.tau)
    if cfg.name == "selfsup_ntxent":
        return selfsup_ntxent_loss(z, tau=cfg.tau)
    raise ValueError(f"not a contrastive loss: {cfg.name}")


def compute_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    lengths: torch.Tensor,
    labels: torch.Tensor,
    cfg: LossConfig,
    epoch: int,
    n_epochs: int,
    with_head: bool,
) -> StepOutput:
    """Forward ``x`` through ``model`` and return the stage's loss and its parts.

    For multi-view batches, rows 2k and 2k+1 of ``x`` are two views of one utterance and
    ``labels`` is already repeated to match.
    """
    h = model.embed(x, lengths)
    parts: Dict[str, torch.Tensor] = {}
    if not with_head:
        z = model.contrastive(h)
        loss = contrastive_term(cfg, z.float(), labels, epoch, n_epochs)
        parts[cfg.name] = loss.detach()
        return StepOutput(loss, parts, None)

    logits = model.classify(h)
    loss = cross_entropy_loss(logits.float(), labels)
    parts["ce"] = loss.detach()
    if cfg.supcon_weight > 0 or cfg.selfsup_weight > 0:
        z = model.contrastive(h).float()
        if cfg.supcon_weight > 0:
            sc = supcon_loss(z, labels, tau=cfg.supcon_tau)
            parts["supcon"] = sc.detach()
            loss = loss + cfg.supcon_weight * sc
        if cfg.selfsup_weight > 0:
            ss = selfsup_ntxent_loss(z, tau=cfg.selfsup_tau)
            parts["selfsup_ntxent"] = ss.detach()
            loss = loss + cfg.selfsup_weight * ss
    return StepOutput(loss, parts, logits)
