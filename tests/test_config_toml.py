"""The resolved ``config.toml`` of a fold: valid TOML for any value, read back into the same
dataclasses, and the run fingerprints (resume / fine-tuning source checks) unchanged by it."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from ser_cl.config import SECTIONS, StageConfig, as_table, stage_from_dict, to_toml
from ser_cl.experiment import tomllib
from ser_cl.train.fingerprint import config_fingerprint

NASTY = ('line one\nline "two" with \\backslash\\ and a tab\there, '
         '\u00e9\u00fc\u00df \u65e5\u672c\u8a9e \U0001F600 \x01\x7f')


def _pretrain() -> StageConfig:
    """A valid pretrain stage that sets every field it can away from its default."""
    return stage_from_dict({
        "experiment": "exp \"quoted\" \u00e9", "name": "pre-1", "stage": "pretrain", "description": NASTY,
        "runs_dir": "runs\\win dir/\u00e9", "device": "cuda:1", "probe": False,
        "data": {"dir": "data/d\u00e9j\u00e0 vu", "protocol": "speaker", "max_frames": 300, "eval_batch_size": 7,
                 "store_on_device": False, "prefetch": 5, "pool": ["data/a\nb", "data/\"c\""],
                 "pool_weights": [0.25, 2], "pool_epoch_size": 99, "pool_val_fraction": 0.3,
                 "test_on": ["data/x y", "data/\u00fc"], "holdout_speakers": 3, "val_speakers": 2, "n_folds": 4,
                 "class_map": {"hap": "happy", "\u00e9motion \"x\"": "angry\nline", "a.b": "c=d"}},
        "model": {"preset": "small", "conv_channels": 8, "gru_hidden": 24, "gru_layers": 3, "gru_dropout": 0.25,
                  "transformer_layers": 2, "n_heads": 4, "d_ff": 64, "transformer_dropout": 0.05, "normalize": False,
                  "proj_dim": 32, "input_norm": "speaker", "pooling": "stats", "gru_impl": "packed",
                  "conv1_kernel": [9, 5], "conv2_kernel": [7, 3], "freq_kernels": "scaled", "input_dropout": 0.15,
                  "mlp_hidden": 48, "mlp_dropout": 0.2},
        "loss": {"name": "vicreg", "margin": 0.5, "mining": "semihard-hard", "hard_fraction": 0.4, "tau": 0.07,
                 "supcon_weight": 0.5, "supcon_tau": 0.2, "selfsup_weight": 0.3, "selfsup_tau": 0.25,
                 "barlow_lambda": 1e-4, "vicreg_sim": 10.0, "vicreg_var": 12.5, "vicreg_cov": 2.0,
                 "gather_distributed": False, "label_smoothing": 0.05},
        "optim": {"epochs": 7, "max_steps": 123, "batch_size": 64, "lr": 3.2e-05, "weight_decay": 1e-6,
                  "patience": 9, "lr_factor": 0.5, "monitor": "val_loss", "early_stop": 4, "amp": False,
                  "seed": 42, "sync_batchnorm": True, "ema_decay": 0.99, "schedule": "step", "step_epochs": 3},
        "augment": {"enabled": True, "multiview": True, "view_frames": 150, "time_mask_frac": 0.1,
                    "freq_mask_width": 6, "time_stretch": 0.15},
        "finetune": {"from": "runs/x/\"pre\"\n", "freeze_epochs": 2, "freeze_min_steps": 30, "head_lr": 1e-2,
                     "head_init": "random"},
        "thesis": {"val_ua": 54.79, "note": "table \"4.1\"\nsecond line \u00e9", "\u00e9l\u00e8ve": 1,
                   "variants": {"tau=0.5": {"test_ua": 50.5, "note": "\\o/"}}},
        "sweep": {"loss.tau": [0.05, 0.1], "optim.lr": [1e-3, 1e-4]},
    }, "test")


def _train() -> StageConfig:
    """A valid train stage with what a pretrain stage cannot have (mixup, store on the device)."""
    return stage_from_dict({"stage": "train", "augment": {"enabled": True, "mixup_alpha": 0.2},
                            "data": {"store_on_device": True, "protocol": "file", "folds_file": "folds/\u00e9 x.csv",
                                     "train_copies": ["data/sp 0.9", "data/\u00e9\"1.1\""]},
                            "optim": {"monitor": "val_ua", "refit_head": True, "tensorboard": "off", "keep": "last"}},
                           "test")


def _baseline() -> StageConfig:
    """A valid baseline stage (openSMILE + SVM) with its [baseline] table changed."""
    return stage_from_dict({"stage": "baseline", "description": NASTY,
                            "baseline": {"feature_set": "eGeMAPSv02", "norm": "speaker", "c_grid": [0.5, 2]}}, "test")


def _flat(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict) and key in SECTIONS:
            yield from _flat(value, f"{key}.")
        else:
            yield prefix + key, value


def test_the_test_configs_change_every_field():
    """So that the round trip below covers every field (a new one must be added to them)."""
    default = dict(_flat(as_table(StageConfig())))
    changed = set()
    for cfg in (_pretrain(), _train(), _baseline()):
        changed |= {k for k, v in _flat(as_table(cfg)) if v != default[k]}
    assert set(default) - changed == set(), sorted(set(default) - changed)


@pytest.mark.parametrize("make", [_pretrain, _train, _baseline, StageConfig],
                         ids=["pretrain", "train", "baseline", "default"])
def test_config_toml_is_valid_toml_and_reads_back_into_the_same_config(make):
    cfg = make()
    text = to_toml(cfg)
    loaded = tomllib.loads(text)  # raised TOMLDecodeError with the hand-made writer
    again = stage_from_dict(loaded, "config.toml")
    assert again == cfg
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)
    assert again.description == cfg.description


def test_the_description_survives_verbatim():
    cfg = _pretrain()
    assert tomllib.loads(to_toml(cfg))["description"] == NASTY


def test_fingerprints_are_computed_from_the_config_not_from_config_toml(tmp_path):
    """Resume and fine-tuning checks compare fingerprint.json (the config's data, as JSON) and a
    hash of that file's text (source.config): they must not move with the TOML writer."""
    for cfg in (_pretrain(), _train(), StageConfig()):
        again = stage_from_dict(tomllib.loads(to_toml(cfg)), "config.toml")
        assert config_fingerprint(again) == config_fingerprint(cfg)
    # the hash a fine-tuning fold keeps of its source's fingerprint.json, for the default config:
    # the value the hand-made writer's version gave, so that existing runs are still accepted
    text = json.dumps(config_fingerprint(StageConfig()), indent=2, sort_keys=False) + "\n"
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == PINNED_DEFAULT_SOURCE_HASH


PINNED_DEFAULT_SOURCE_HASH = "6a359086040833e1"
