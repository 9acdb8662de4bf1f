"""Cross-entropy on classifier logits (thesis 3.1.5, baseline of 4.4.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Loss


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-log softmax(u_i)[y_i]`` (plain ``F.cross_entropy``)."""
    return F.cross_entropy(logits, labels)


class CrossEntropy(Loss):
    """Cross-entropy (thesis 3.1.5; baseline 4.4.1).

        L_ce = 1/B sum_i -log( e^{u_i[y_i]} / sum_c e^{u_i[c]} ),   u = g(f(x)) the logits.

    Takes logits ``[B, C]`` and int64 labels ``[B]``. Config name: ``"ce"``; no parameters.
    """

    name = "ce"
    input = "logits"

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy_loss(logits, labels)
