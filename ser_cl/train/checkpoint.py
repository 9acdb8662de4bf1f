"""Checkpoints: ``best.pt`` (the model to use) and ``last.pt`` (everything needed to resume).

Both are dicts written atomically with ``torch.save``:

- ``model``: the state dict; ``model_config``: ModelConfig fields; ``classes``: label names;
  ``n_freq``; ``has_head``; ``features`` (the store's front-end parameters, so ``predict``
  recomputes the same input); with ``model.input_norm = "speaker"`` and a head,
  ``speaker_fallback`` (``mean``, ``std``, ``speakers``: a typical training speaker's band
  statistics, for ``predict`` without enrolment); ``epoch`` (0-based, the last finished epoch); ``value`` (the
  monitored metric).
- ``last.pt`` adds ``optimizer``, ``scheduler`` (of the current ``phase``), ``phase``,
  ``history`` (the metrics.jsonl lines), ``best_value``, ``best_epoch``, ``bad_epochs`` and the
  random states (``rng``); with ``optim.ema_decay`` also ``ema`` (``steps`` and the averaged
  ``model`` state dict, the weights that ``best.pt`` holds).

Loading accepts tensors and plain types only (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import dataclasses
import pickle
import re
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


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Dict[str, Any]:
    """Read a checkpoint as tensors and plain Python types only (``torch.load(weights_only=True)``).

    A pickle that names any other class or function (which could run code when loaded) is
    refused with a one-line ValueError before anything in it is called.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found (train the run first)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # a broken pickle, not a refused one
            raise ValueError(f"{path}: not a readable ser-cl checkpoint (corrupt pickle); "
                             "delete it and re-run training") from None
        raise ValueError(f"{path}: refused to load: it holds {found.group(1)}, not only tensors and plain "
                         "types, so loading it could run code (ser-cl loads checkpoints as tensors and plain "
                         "types only)") from None
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable ser-cl checkpoint ({type(err).__name__}: {_first_line(err)}); "
                         "delete it and re-run training") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: not a ser-cl checkpoint (expected a dict with a 'model' state dict); "
                         "delete it and re-run training")
    return ckpt


def load_model(path: str | Path, device: Any = "cpu") -> Tuple[SERModel, Dict[str, Any]]:
    """Rebuild the model stored in a checkpoint, in eval mode on ``device``."""
    ckpt = load_checkpoint(path)
    model = SERModel(model_config_from_dict(ckpt["model_config"]), len(ckpt["classes"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    return model, ckpt
