"""Cross-entropy on classifier logits (thesis 3.1.5, baseline of 4.4.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Loss


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over the batch of ``-log softmax(u_i)[y_i]`` (plain ``F.cross_entropy``).

    ``labels``: int64 [B], or soft targets [B, C] (mixup). ``label_smoothing`` eps: the target
    is (1 - eps) onehot + eps / C (Szegedy et al. 2016); 0 in the thesis.
    """
    return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)


class CrossEntropy(Loss):
    """Cross-entropy (thesis 3.1.5; baseline 4.4.1).

        L_ce = 1/B sum_i -log( e^{u_i[y_i]} / sum_c e^{u_i[c]} ),   u = g(f(x)) the logits.

    Takes logits ``[B, C]`` and int64 labels ``[B]`` (or soft targets ``[B, C]``, from mixup).
    Config name: ``"ce"``; parameter ``label_smoothing`` (default 0, the thesis').
    """

    name = "ce"
    input = "logits"

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, labels, self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"
