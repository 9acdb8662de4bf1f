"""What one training step minimises, for every stage of the thesis, built from the loss registry.

- ``train`` / ``finetune``: L = CE + lambda * SupCon + beta * self-supervised NT-Xent
  (thesis 4.4.1, 4.4.3 and 4.4.5; lambda = ``loss.supcon_weight``, beta = ``loss.selfsup_weight``).
- ``pretrain``: the contrastive loss ``loss.name`` on the L2-normalised embeddings z (4.4.2,
  4.4.4), with the triplet mining of the current epoch.

Every term is a module from ``ser_cl.losses.build_loss``: the modules the loss tests check are
the ones that train. ``validation_objective`` gives the loss whose value picks ``best.pt``: the
same loss, except that a mining *schedule* (semi-hard then hard) is judged with every triplet
all run long, so the monitored value means the same thing before and after the switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ser_cl.config import LossConfig
from ser_cl.losses import MINING_SCHEDULES, MINING_STRATEGIES, build_loss, loss_parameters


@dataclass
class StepOutput:
    loss: torch.Tensor
    parts: Dict[str, torch.Tensor]  # each term, detached (summed on the device; no host sync)
    logits: Optional[torch.Tensor]  # classifier outputs (None when there is no head)


def loss_module(name: str, cfg: LossConfig, gather: bool = False, **fixed) -> nn.Module:
    """``build_loss(name)`` with the parameters it takes read from ``cfg`` (same field names;
    ``fixed`` wins). ``gather``: negatives from every process of a data-parallel run."""
    accepted = loss_parameters(name)
    params = {k: getattr(cfg, k) for k in accepted if hasattr(cfg, k) and k != "gather_distributed"}
    params.update({k: v for k, v in fixed.items() if k in accepted})
    if gather and "gather_distributed" in accepted:
        params["gather_distributed"] = True
    return build_loss(name, **params)


class Objective(nn.Module):
    """The stage's loss, L = sum_k w_k * L_k, over the modules of ``terms``."""

    def __init__(self, cfg: LossConfig, with_head: bool, gather: bool = False, fixed_mining: bool = False):
        super().__init__()
        self.with_head = with_head
        self.terms = nn.ModuleDict()
        self.weights: Dict[str, float] = {}
        if with_head:
            self.terms["ce"] = loss_module("ce", cfg)
            self.weights["ce"] = 1.0
            if cfg.supcon_weight > 0:
                self.terms["supcon"] = loss_module("supcon", cfg, gather, tau=cfg.supcon_tau)
                self.weights["supcon"] = cfg.supcon_weight
            if cfg.selfsup_weight > 0:
                self.terms["selfsup_ntxent"] = loss_module("selfsup_ntxent", cfg, gather, tau=cfg.selfsup_tau)
                self.weights["selfsup_ntxent"] = cfg.selfsup_weight
        else:
            fixed = {}
            if fixed_mining and cfg.mining in MINING_SCHEDULES and cfg.mining not in MINING_STRATEGIES:
                fixed["mining"] = "all"
            self.terms[cfg.name] = loss_module(cfg.name, cfg, gather, **fixed)
            self.weights[cfg.name] = 1.0

    @property
    def needs_z(self) -> bool:
        return any(getattr(m, "input", "embeddings") != "logits" for m in self.terms.values())

    def set_epoch(self, epoch: int, n_epochs: int) -> None:
        for term in self.terms.values():
            term.set_epoch(epoch, n_epochs)

    def forward(self, model: nn.Module, x: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                lengths_dev: Optional[torch.Tensor] = None, shard_sizes=None) -> StepOutput:
        """Forward ``x`` through ``model`` and return the loss and its parts.

        For multi-view batches rows 2k and 2k+1 of ``x`` are two views of one utterance and
        ``labels`` is already repeated to match. ``shard_sizes``: every process's row count under
        data parallelism (so the gathering losses need not exchange them: no host read).
        """
        h = model.embed(x, lengths, lengths_dev)
        logits = model.classify(h) if self.with_head else None
        p = model.project(h) if self.needs_z else None  # Barlow Twins / VICReg take it as is,
        z = F.normalize(p, dim=-1) if p is not None else None  # the contrastive losses normalised
        loss: Optional[torch.Tensor] = None
        parts: Dict[str, torch.Tensor] = {}
        for name, term in self.terms.items():
            if term.input == "logits":
                value = term(logits.float(), labels)
            else:
                value = term(z if getattr(term, "normalized_input", True) else p, labels, shard_sizes=shard_sizes)
            parts[name] = value.detach()
            weighted = self.weights[name] * value if self.weights[name] != 1.0 else value
            loss = weighted if loss is None else loss + weighted
        assert loss is not None
        return StepOutput(loss, parts, logits)


def validation_objective(cfg: LossConfig, with_head: bool) -> Objective:
    """The objective whose validation value is monitored: fixed mining for a mining schedule."""
    return Objective(cfg, with_head, fixed_mining=True)
