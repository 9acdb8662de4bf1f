"""Phases of a fold's training and their optimiser: which parameters train in which epochs
(one phase; fine-tuning: the encoder frozen, then everything), the epoch budget, and each
phase's fresh Adam with its learning-rate schedule (plateau, step or cosine). The training loop
(``ser_cl.train.loop``) calls these at the start of every phase."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import List

import torch

from ser_cl.config import StageConfig
from ser_cl.models import SERModel
from ser_cl.train.objective import Objective


@dataclass
class Phase:
    """Epochs [start, end) with their own optimiser and scheduler."""

    name: str  # "train", or "frozen" / "all" when fine-tuning
    start: int
    end: int
    encoder_trains: bool


def epochs_of(cfg: StageConfig, steps_per_epoch: int) -> int:
    """``optim.epochs``, capped by the step budget ``optim.max_steps`` (when set)."""
    n = cfg.optim.epochs
    if cfg.optim.max_steps:
        n = min(n, max(1, math.ceil(cfg.optim.max_steps / max(steps_per_epoch, 1))))
    return n


def phases_of(cfg: StageConfig, steps_per_epoch: int) -> List[Phase]:
    """One phase; fine-tuning: the encoder frozen for ``freeze_epochs`` (at least
    ``freeze_min_steps`` optimiser steps on a small corpus), then everything. The epochs are
    ``epochs_of`` (the step budget may cap them)."""
    n = epochs_of(cfg, steps_per_epoch)
    if cfg.kind != "finetune":
        return [Phase("train", 0, n, True)]
    frozen = cfg.finetune.freeze_epochs
    if cfg.finetune.freeze_min_steps and frozen > 0:
        frozen = max(frozen, math.ceil(cfg.finetune.freeze_min_steps / max(steps_per_epoch, 1)))
    frozen = min(frozen, n)
    return [p for p in (Phase("frozen", 0, frozen, False), Phase("all", frozen, n, True)) if p.end > p.start]


def set_trainable(model: SERModel, cfg: StageConfig, phase: Phase, objective: Objective) -> None:
    """requires_grad for this phase: the frozen encoder keeps its weights, and heads the loss
    does not use stay out of the optimiser (and of DDP's gradient bookkeeping)."""
    for p in model.encoder_parameters():
        p.requires_grad_(phase.encoder_trains)
    for p in model.classifier.parameters():
        p.requires_grad_(cfg.has_head)
    if model.projection is not None:
        for p in model.projection.parameters():
            p.requires_grad_(objective.needs_z)


def lr_multiplier(cfg: StageConfig, epoch: int, n_epochs: int) -> float:
    """The lr of epoch ``epoch`` (0-based, within a phase of ``n_epochs``) over ``optim.lr``, for
    the schedules set by epoch alone: step (x ``lr_factor`` every ``step_epochs``) and cosine."""
    if cfg.optim.schedule == "step":
        return cfg.optim.lr_factor ** (epoch // cfg.optim.step_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(n_epochs, 1)))


def make_optimizer(model: SERModel, cfg: StageConfig, device: torch.device, n_epochs: int = 1):
    """Adam over the trainable parameters (the head at ``finetune.head_lr`` when fine-tuning)
    and a fresh scheduler for a phase of ``n_epochs``, stepped once per epoch: ReduceLROnPlateau
    (lr x ``lr_factor`` after ``patience`` bad epochs; ``optim.schedule = "plateau"``) or the
    phase's epochs mapped to an lr (``lr_multiplier``: step, cosine)."""
    head_lr = cfg.finetune.head_lr if cfg.kind == "finetune" and cfg.finetune.head_lr else cfg.optim.lr
    heads = {id(p) for p in model.head_parameters()}
    groups = [{"name": "encoder", "lr": cfg.optim.lr,
               "params": [p for p in model.parameters() if p.requires_grad and id(p) not in heads]},
              {"name": "head", "lr": head_lr, "params": [p for p in model.head_parameters() if p.requires_grad]}]
    groups = [g for g in groups if g["params"]]
    # fused: one kernel per step, and its step counters stay on the device (no .item() per step)
    try:
        optimizer = torch.optim.Adam(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=True)
    except RuntimeError:  # PyTorch < 2.4 fuses Adam on CUDA only
        optimizer = torch.optim.Adam(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    if cfg.optim.schedule != "plateau":
        return optimizer, torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_multiplier, cfg, n_epochs=n_epochs))
    mode = "max" if cfg.monitor == "val_ua" else "min"
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=cfg.optim.lr_factor,
                                                           patience=cfg.optim.patience)
    return optimizer, scheduler
