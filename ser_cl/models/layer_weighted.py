"""The front-end of model preset "layer_weighted": an MLP on a learned softmax-weighted sum of
an upstream's layers, for a store prepared with ``--features ssl --layers all``.

Such a store's frames hold L layers of D hidden-state values side by side ([T, L * D]). The
model reads them pooled (``input_norm = "pooled_speaker"``, ``ser_cl.data.stores.normalize``): one
vector per utterance, the mean over its frames of each of the L * D values followed by their
standard deviations ([1, 2 * L * D]), each speaker's vectors standardised with that speaker's
own statistics. This module then takes, per utterance::

    [mean (L x D) | std (L x D)] -> per layer [mean_l | std_l] (L x 2D)
    -> sum_l softmax(w)_l [mean_l | std_l]        (w: L learned weights, zero at the start)
    -> Dropout(input_dropout) -> Linear(2D, d_model) -> LayerNorm -> GELU -> Dropout(dropout)

which is the "wsum" head of ``benchmarks/upstream_probe.py`` (where it was chosen on EmoDB).
It keeps the frame axis ([B, T, 2F] -> [B, T, d_model]), so ``SERModel`` pools its single frame
as it pools any other front-end's frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerWeighted(nn.Module):
    """[B, T, 2 * n_layers * hidden] pooled vectors -> [B, T, d_model] (module docstring)."""

    def __init__(self, n_in: int, n_layers: int, d_model: int, input_dropout: float, dropout: float) -> None:
        super().__init__()
        if n_layers < 1 or n_in % (2 * n_layers):
            raise ValueError(f"layer_weighted: {n_in} input values are not mean + std of {n_layers} equal layers")
        self.n_layers, self.hidden = n_layers, n_in // (2 * n_layers)
        self.layer_logits = nn.Parameter(torch.zeros(n_layers))
        self.input_dropout = float(input_dropout)
        self.mlp = nn.Sequential(nn.Linear(2 * self.hidden, d_model), nn.LayerNorm(d_model), nn.GELU(),
                                 nn.Dropout(dropout))

    def layer_weights(self) -> torch.Tensor:
        """The softmax weights of the layers [L] (what the model learned to read from each)."""
        return torch.softmax(self.layer_logits, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, n_in = x.shape
        half = n_in // 2
        mean = x[..., :half].reshape(batch, frames, self.n_layers, self.hidden)
        std = x[..., half:].reshape(batch, frames, self.n_layers, self.hidden)
        per_layer = torch.cat([mean, std], dim=-1)  # [B, T, L, 2D]
        mixed = (self.layer_weights().to(per_layer.dtype)[:, None] * per_layer).sum(dim=2)
        return self.mlp(F.dropout(mixed, self.input_dropout, self.training))
