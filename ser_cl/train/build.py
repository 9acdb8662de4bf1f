"""Building a fold's model: the device, the ModelConfig a stage asks for, and a fresh model or
one whose encoder (and architecture) come from a pretrained fold's checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from ser_cl.config import StageConfig
from ser_cl.data.splits.folds import Fold
from ser_cl.data.stores.store import FeatureStore
from ser_cl.models import PRESETS, ModelConfig, SERModel
from ser_cl.train.checkpoint import load_checkpoint, model_config_from_dict


def resolve_device(spec: str = "auto") -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{spec}' requested but CUDA is not available; use --device cpu")
    return device


def model_config_for(cfg: StageConfig, n_freq: int) -> ModelConfig:
    """The ModelConfig of a fresh model: preset, then the fields set in [model]."""
    if cfg.model.preset not in PRESETS:
        raise ValueError(f"model.preset must be one of {', '.join(PRESETS)}, got '{cfg.model.preset}'")
    fields = dict(PRESETS[cfg.model.preset])
    for key, value in vars(cfg.model).items():
        if key in fields and value is not None:
            fields[key] = value
    for key, (field, convert) in MLP_KEYS.items():  # the functionals MLP's names for its fields
        value = getattr(cfg.model, key)
        if value is None:
            continue
        if fields["frontend"] not in ("projection", "layer_weighted") or fields["transformer_layers"] != 0:
            raise ValueError(f"model.{key} is the functionals MLP's (model.preset = \"functionals\"), not "
                             f"model.preset = \"{cfg.model.preset}\"'s; use model.gru_hidden / transformer_dropout there")
        if getattr(cfg.model, field) is not None:
            raise ValueError(f"model.{key} and model.{field} set the same value: keep model.{key}")
        if key == "mlp_hidden" and (not isinstance(value, int) or value < 2 or value % 2):
            raise ValueError(f"model.mlp_hidden must be an even number >= 2, got {value!r}")
        fields[field] = convert(value)
    if cfg.model.normalize is None:  # thesis: L2-normalised outputs when training contrastively
        # (Barlow Twins / VICReg standardise or regularise the raw projection themselves)
        fields["normalize"] = cfg.kind == "pretrain" and cfg.loss.name not in ("barlow_twins", "vicreg")
    if cfg.model.freq_kernels == "scaled":  # the thesis' kernels span the same share of the bins
        for key in ("conv1_kernel", "conv2_kernel"):
            k_f, k_t = fields[key]
            fields[key] = (max(1, round(k_f * n_freq / 257)), k_t)
    # pooled inputs (ser_cl.data.stores.normalize.pooled): each value's mean and std, twice as many
    fields["n_freq"] = 2 * n_freq if fields["input_norm"] == "pooled_speaker" else n_freq
    return model_config_from_dict(fields)


def stored_layers(store: FeatureStore) -> int:
    """How many layers side by side a store's frames hold (``prepare --layers``; 1 otherwise)."""
    return max(1, len(store.feature_params.get("layers") or [0]))


# [model] keys of the functionals MLP -> (the ModelConfig field that holds it, its value there):
# its hidden width is d_model = 2 x gru_hidden, its dropout the projection's transformer_dropout
MLP_KEYS = {"mlp_hidden": ("gru_hidden", lambda width: width // 2),
            "mlp_dropout": ("transformer_dropout", lambda p: p)}

# [model] keys that a fine-tuning stage may set differently from its pretrained encoder
_NOT_ARCHITECTURE = ("preset", "normalize", "gru_impl", "freq_kernels")


def _check_architecture_matches(cfg: StageConfig, n_freq: int, source_fields: Dict[str, Any], source: Path) -> None:
    """The architecture comes from the checkpoint: a [model] key that this stage sets to another
    value would be silently ignored, so it is refused with the key, both values and the fix."""
    wanted = vars(model_config_for(cfg, n_freq))
    for key, value in vars(cfg.model).items():
        field = MLP_KEYS[key][0] if key in MLP_KEYS else key
        if value is None or key in _NOT_ARCHITECTURE or field not in source_fields:
            continue
        have, want = source_fields[field], wanted[field]
        if key == "mlp_hidden":  # as the key says it: the hidden width
            have, want = 2 * have, 2 * want
        if isinstance(have, (list, tuple)):
            have, want = list(have), list(want)
        if have != want:
            raise ValueError(f"model.{key} = {want!r}, but the pretrained encoder in {source} has {have!r}: "
                             f"the architecture comes from the checkpoint; drop model.{key} from this stage "
                             "or set it in the pretraining stage too")


def build_model(cfg: StageConfig, store: FeatureStore, fold: Fold, source_checkpoint: Optional[Path]):
    """A fresh model, or one whose encoder (and architecture) come from a pretrained fold."""
    if source_checkpoint is None:
        model_cfg = model_config_for(cfg, store.n_freq)
        if model_cfg.frontend == "layer_weighted" and model_cfg.n_layers == 0:
            model_cfg = dataclasses.replace(model_cfg, n_layers=stored_layers(store))
        model = SERModel(model_cfg, len(store.classes))
        if model_cfg.input_norm == "global":  # the training speakers' statistics, nobody else's
            from ser_cl.data.stores.normalize import band_stats

            model.set_input_stats(*band_stats(store, fold.train))
        return model, model_cfg
    source = load_checkpoint(source_checkpoint)
    # the classes matter only to a checkpoint with a trained head (a pretrained encoder has none)
    if source.get("has_head", True) and list(source["classes"]) != list(store.classes):
        raise ValueError(f"{source_checkpoint}: classes {source['classes']} differ from {store.classes}")
    fields = dict(source["model_config"])
    _check_architecture_matches(cfg, store.n_freq, fields, source_checkpoint)
    if cfg.model.gru_impl is not None:  # exact either way: the speed choice belongs to this machine
        fields["gru_impl"] = cfg.model.gru_impl
    # the thesis' CE head sees the raw embedding: L2 normalisation belongs to the contrastive loss
    fields["normalize"] = cfg.model.normalize if cfg.model.normalize is not None else cfg.kind == "pretrain"
    model_cfg = model_config_from_dict(fields)
    model = SERModel(model_cfg, len(store.classes))
    encoder_state = {k: v for k, v in source["model"].items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(encoder_state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise ValueError(f"{source_checkpoint}: encoder weights do not match the model ({missing}, {unexpected})")
    return model, model_cfg
