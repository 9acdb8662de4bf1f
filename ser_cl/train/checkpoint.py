"""Checkpoints: ``best.pt`` (the model to use) and ``last.pt`` (everything needed to resume).

Both are dicts written atomically with ``torch.save``:

- ``model``: the state dict; ``model_config``: ModelConfig fields; ``classes``: label names;
  ``n_freq``; ``epoch`` (0-based, the last finished epoch); ``value`` (the monitored metric).
- ``last.pt`` adds ``optimizer``, ``scheduler``, ``history`` (the metrics.jsonl lines),
  ``best_value``, ``best_epoch``, ``bad_epochs`` and the random states (``rng``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from ser_cl.io import torch_save
from ser_cl.models import ModelConfig, SERModel


def model_config_dict(cfg: ModelConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def model_config_from_dict(d: Dict[str, Any]) -> ModelConfig:
    d = dict(d)
    for key in ("conv1_kernel", "conv2_kernel"):
        if key in d and isinstance(d[key], list):
            d[key] = tuple(d[key])
    return ModelConfig(**d)


def save_checkpoint(path: Path, model: torch.nn.Module, model_cfg: ModelConfig, classes, **extra: Any) -> None:
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": model_config_dict(model_cfg),
        "classes": list(classes),
        **extra,
    }
    torch_save(path, state)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (train the run first)")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable ser-cl checkpoint ({type(err).__name__}: {err}); "
                         "delete it and re-run training") from None


def load_model(path: str | Path, device: Any = "cpu") -> Tuple[SERModel, Dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, in eval mode on ``device``."""
    ckpt = load_checkpoint(path)
    model = SERModel(model_config_from_dict(ckpt["model_config"]), len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
