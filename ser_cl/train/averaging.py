"""An exponential moving average of the weights (``optim.ema_decay``; beyond the thesis).

After every optimiser step t (0, 1, 2, ...), every floating-point parameter and buffer
(BatchNorm's running statistics included) of the averaged copy moves towards the trained model:

    theta_avg <- d_t * theta_avg + (1 - d_t) * theta,      d_t = min(d, (1 + t) / (10 + t))

and integer buffers (BatchNorm's batch counter) are copied. The warm-up of d_t keeps the first
steps from being dominated by the initial weights (TensorFlow's ExponentialMovingAverage with
``num_updates``). The training loop validates, checkpoints (``best.pt``) and finally evaluates
the averaged weights; ``last.pt`` holds both, so a resumed run continues both.

Why: on a small corpus the validation set is one or two speakers, and the weights after any one
step are a noisy point on the path; picking the best epoch by that noisy validation score picks
noise too. The average over the last ~1 / (1 - d) steps moves more smoothly.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

import torch


class WeightAverage:
    """The averaged copy of ``model`` (``self.model``, never trained directly)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"optim.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One step of the average towards ``model``'s weights (call after each optimiser step)."""
        weight = 1.0 - self.current_decay()
        live = model.state_dict()
        floats, targets = [], []
        for key, avg in self.model.state_dict().items():
            if avg.dtype.is_floating_point:
                floats.append(avg)
                targets.append(live[key])
            else:
                avg.copy_(live[key])
        torch._foreach_lerp_(floats, targets, weight)
        self.steps += 1

    def state_dict(self) -> Dict[str, Any]:
        return {"steps": self.steps, "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.model.load_state_dict(state["model"])
