"""From an experiment file to fold directories: plan stages and sweeps, then train each fold.

Layout written here (see docs/file-formats.md, "Run directory"):
``runs/<experiment>/<variant>/run.json`` and ``runs/<experiment>/<variant>/fold-NN/...``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ser_cl.config import SELF_SUPERVISED_LOSSES, ConfigError, StageConfig
from ser_cl.experiment import Variant, expand, load_experiment
from ser_cl.data.splits.coverage import fold_gap_warnings
from ser_cl.data.batches.copies import copy_dirs, load_copies, with_copies
from ser_cl.data.splits.folds import Fold, auto_protocol, make_folds_for
from ser_cl.data.batches.pool import (KEYS_FILE, POOL_FOLD, SEEN_FILE, check_not_seen, check_source_fold, pool_units,
                              serves_every_fold)
from ser_cl.data.stores.store import FeatureStore
from ser_cl.io import save_npy, write_json
from ser_cl.progress import progress_bar
from ser_cl.train import distributed
from ser_cl.train.build import resolve_device
from ser_cl.train.fingerprint import check_fold_config, config_fingerprint, fold_is_complete, write_split
from ser_cl.train.fold_lock import LOCK_FILE, claim_fold, live_holder
from ser_cl.train.loop import train_fold


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# What ``run_variant`` does with a pool pretraining that serves every fold (run folder ``pool``)
# under ``--devices`` (``ser_cl.pipeline.run_on_devices``): the parent trains it once, alone,
# before it deals the folds out (SHARED_POOLS_ONLY: nothing else), and the workers take it as
# trained (SHARED_POOLS_TRAINED: neither trained again nor cleared by --restart), so that they do
# not all write its checkpoints at once, nor delete the directory that another trains in.
ALL_RUNS, SHARED_POOLS_ONLY, SHARED_POOLS_TRAINED = "all", "shared-pools-only", "shared-pools-trained"
SHARED_POOLS_ENV = "SER_CL_SHARED_POOLS_TRAINED"  # "1" in the environment of --devices workers


@dataclass
class PlannedStage:
    stage: StageConfig
    variants: List[Variant]


def variant_dir(cfg: StageConfig, variant_name: str) -> Path:
    return Path(cfg.runs_dir) / cfg.experiment / variant_name


def plan(stages: List[StageConfig]) -> List[PlannedStage]:
    """Expand every stage's sweep; a finetune of an earlier stage fans out over its variants."""
    by_name: Dict[str, List[Variant]] = {}
    planned = []
    for stage in stages:
        parents = by_name.get(stage.finetune.source)
        variants = expand(stage, parents)
        by_name[stage.name] = variants
        planned.append(PlannedStage(stage, variants))
    return planned


def source_dir_of(variant: Variant) -> Optional[Path]:
    """The pretrained variant directory a finetune variant starts from."""
    cfg = variant.config
    if not cfg.finetune.source:
        return None
    if variant.source is not None:
        return variant_dir(cfg, variant.source)
    path = Path(cfg.finetune.source)
    if not (path / "run.json").is_file():
        below = sorted(p.parent.name for p in path.glob("*/run.json")) if path.is_dir() else []
        hint = f"; it holds the variants {', '.join(below)}: name one of them" if below else ""
        raise ConfigError(f"finetune.from = '{path}' is not a run directory with run.json{hint}")
    return path


def _select_folds(all_folds: List[Fold], folds: Optional[Sequence[int]], cfg: StageConfig) -> List[Fold]:
    """The folds numbered in ``folds`` (1-based; all when None)."""
    selected = [f for k, f in enumerate(all_folds, 1) if not folds or k in folds]
    if folds and len(selected) != len(set(folds)):
        raise ConfigError(f"--fold must be between 1 and {len(all_folds)} (protocol {cfg.data.protocol})")
    return selected


def run_variant(variant: Variant, folds: Optional[Sequence[int]] = None, device_spec: Optional[str] = None,
                progress: bool = True, restart: bool = False, pools: str = ALL_RUNS) -> Optional[Path]:
    """Train the selected folds (1-based numbers; all when None) of one variant.

    A fold already trained (or half-trained) under a different config stops the run with the
    keys that differ; ``restart`` clears the selected folds first instead. ``pools``: ALL_RUNS,
    or (``--devices``) SHARED_POOLS_ONLY / SHARED_POOLS_TRAINED (see there); None where nothing
    was run (SHARED_POOLS_ONLY and a variant that is not such a pool).
    """
    if pools not in (ALL_RUNS, SHARED_POOLS_ONLY, SHARED_POOLS_TRAINED):
        raise ValueError(f"pools must be one of {ALL_RUNS}, {SHARED_POOLS_ONLY}, {SHARED_POOLS_TRAINED}; got {pools!r}")
    cfg = variant.config
    if cfg.data.train_copies:  # "{data.dir}-sp0.9" -> the store's path, in config.toml and the fingerprint too
        cfg = replace(cfg, data=replace(cfg.data, train_copies=copy_dirs(cfg.data.train_copies, cfg.data.dir)))
    device = distributed.setup() or resolve_device(device_spec or cfg.device)  # torchrun: this rank's GPU
    store = FeatureStore(cfg.data.dir)
    self_supervised = cfg.kind == "pretrain" and cfg.loss.name in SELF_SUPERVISED_LOSSES
    if not store.labeled and not self_supervised:
        raise ConfigError(f"{cfg.data.dir} is unlabeled (prepare --corpus unlabeled): a {cfg.kind} stage with "
                          f"loss.name = {cfg.loss.name} needs labels; use it in a self-supervised pretrain "
                          f"stage ({' | '.join(SELF_SUPERVISED_LOSSES)}), e.g. in its data.pool")
    if (cfg.data.pool and cfg.kind == "pretrain") or not store.labeled:
        return _run_pool(variant, store, folds, device, progress, restart, pools)
    if pools == SHARED_POOLS_ONLY:
        return None
    all_folds = make_folds_for(store, cfg.data)
    out = variant_dir(cfg, variant.name)
    source = source_dir_of(variant)
    one_source = False  # a pool pretraining that serves every fold (its run folder "pool")
    if source is not None:
        info = json.loads((source / "run.json").read_text()) if (source / "run.json").is_file() else None
        if info is None:
            raise ConfigError(f"{source}: no run.json; run the pretraining stage first")
        one_source = serves_every_fold(info)
        if not one_source and info["folds"] != [f.name for f in all_folds]:
            raise ConfigError(f"{source}: its folds {info['folds']} differ from this data's protocol")
    selected = _select_folds(all_folds, folds, cfg)
    if (cfg.has_head or cfg.kind == "baseline") and distributed.is_main():  # a class its test speaker has, unseen
        for line in fold_gap_warnings(store.labels, store.classes, [f for f in selected if f.test.size]):
            _say(line)
    try:  # before anything is written: a missing copy store stops with the command that makes it
        copies = load_copies(store, cfg.data.train_copies) if cfg.data.train_copies else []
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err
    if distributed.is_main():
        write_json(out / "run.json", {
            "experiment": cfg.experiment, "variant": variant.name, "stage": cfg.kind, "description": cfg.description,
            "data_dir": str(Path(cfg.data.dir).resolve()), "corpus": store.info.get("corpus"),
            "protocol": auto_protocol(store) if cfg.data.protocol == "auto" else cfg.data.protocol,
            "folds": [f.name for f in all_folds], "sweep": variant.sweep, "thesis": cfg.thesis,
            "classes": list(store.classes), "head": cfg.has_head,
            "source": str(source) if source is not None else None,
        })
    if cfg.kind == "baseline":
        from ser_cl.train.baseline import run_baseline

        return run_baseline(cfg, store, selected, out, progress, restart, copies)
    for fold in progress_bar(selected, desc=f"{cfg.experiment}/{variant.name}", unit="fold", disable=not progress):
        src_ckpt = source / (POOL_FOLD if one_source else fold.name) / "best.pt" if source is not None else None
        if src_ckpt is not None and not src_ckpt.is_file():
            held = live_holder(src_ckpt.parent / LOCK_FILE)
            if held is not None:  # another run is pretraining it now
                _say(f"{out / fold.name}: skipped, its pretraining {src_ckpt.parent} is held by {held.describe()}")
                continue
            raise ConfigError(f"{src_ckpt}: missing; pretrain {source} (fold {fold.name}) before fine-tuning it")
        if src_ckpt is not None:
            try:
                check_not_seen(src_ckpt.parent, store, fold)  # a pool must not have trained on this fold's held-out
                if not one_source:  # a per-fold source: the same fold name may hold other speakers
                    check_source_fold(src_ckpt.parent, info.get("data_dir"), store, fold)
            except ValueError as err:
                raise ConfigError(str(err)) from err
        fingerprint = config_fingerprint(cfg, src_ckpt)
        with claim_fold(out / fold.name, device) as mine:
            if not mine:
                continue
            if distributed.is_main():
                check_fold_config(out / fold.name, fingerprint, restart)
                write_json(out / fold.name / "fingerprint.json", fingerprint)
            distributed.barrier()
            fold_store, fold_rows = store, fold
            if copies and not fold_is_complete(out / fold.name):
                fold_store, fold_rows = with_copies(store, fold, copies)
            train_fold(cfg, fold_store, fold_rows, out / fold.name, device, source_checkpoint=src_ckpt,
                       progress=progress)
    return out


def _run_pool(variant: Variant, target: FeatureStore, folds: Optional[Sequence[int]], device,
              progress: bool, restart: bool, pools: str = ALL_RUNS) -> Optional[Path]:
    """Self-supervised pretraining on ``data.pool`` (or on an unlabeled ``data.dir``): once for
    every fold (run folder ``pool``), or per fold when the pool holds the target corpus, whose
    folds' validation and test speakers are then left out (``ser_cl.data.batches.pool``).

    ``pools`` (``--devices``): SHARED_POOLS_ONLY runs only a pool for every fold (None for a
    per-fold one); SHARED_POOLS_TRAINED requires a pool for every fold to be complete already
    and leaves it alone (no training, no --restart), and trains a per-fold one as usual."""
    cfg = variant.config
    out = variant_dir(cfg, variant.name)
    labeled = target if target.labeled else None
    all_folds = make_folds_for(labeled, cfg.data) if labeled is not None else []
    selected = _select_folds(all_folds, folds, cfg)
    per_fold, units = pool_units(list(cfg.data.pool) or [cfg.data.dir], cfg.data.pool_weights, labeled, selected,
                                 cfg.data.pool_val_fraction, cfg.optim.seed, cfg.data.pool_epoch_size)
    if pools == SHARED_POOLS_ONLY and per_fold:
        return None  # per fold: the --devices workers train it, each for its folds
    if pools == SHARED_POOLS_TRAINED and not per_fold:
        if not fold_is_complete(out / POOL_FOLD):
            raise ConfigError(f"{out / POOL_FOLD}: the pool pretraining for every fold should have been trained "
                              "before the folds were dealt out to the --devices workers, and is not complete")
        return out
    if distributed.is_main():
        write_json(out / "run.json", {
            "experiment": cfg.experiment, "variant": variant.name, "stage": cfg.kind, "description": cfg.description,
            "data_dir": str(Path(cfg.data.dir).resolve()), "corpus": target.info.get("corpus"),
            "protocol": (auto_protocol(labeled) if cfg.data.protocol == "auto" else cfg.data.protocol)
            if labeled is not None else None,
            "folds": [f.name for f in all_folds] if per_fold else [POOL_FOLD], "sweep": variant.sweep,
            "thesis": cfg.thesis, "classes": list(target.classes), "head": False, "source": None,
            "pool": {"per_fold": per_fold, "dirs": [str(Path(d).resolve()) for d in cfg.data.pool or [cfg.data.dir]],
                     "weights": list(cfg.data.pool_weights), "epoch_size": cfg.data.pool_epoch_size},
        })
    by_name = {f.name: f for f in selected}
    for name, build in progress_bar(units, desc=f"{cfg.experiment}/{variant.name}", unit="fold",
                                    disable=not progress):
        fold_dir = out / name
        fingerprint = config_fingerprint(cfg)
        with claim_fold(fold_dir, device) as mine:
            if not mine:
                continue
            if distributed.is_main():
                check_fold_config(fold_dir, fingerprint, restart)
            if fold_is_complete(fold_dir):
                continue
            unit = build()
            if distributed.is_main():
                write_json(fold_dir / "fingerprint.json", fingerprint)
                write_json(fold_dir / SEEN_FILE, unit.seen)
                save_npy(fold_dir / KEYS_FILE, np.unique(unit.trained_keys))
            distributed.barrier()
            train_fold(cfg, unit.store, unit.fold, fold_dir, device, progress=progress)
            if name in by_name and distributed.is_main():  # probe and report read the target fold's parts
                write_split(fold_dir, target, by_name[name])
    return out


def select_stages(path: str | Path, kinds: Sequence[str], overrides: List[str],
                  stage_names: Optional[Sequence[str]] = None, preset: Optional[str] = None) -> List[PlannedStage]:
    """Plan the experiment and keep the stages of the given kinds (or those named)."""
    planned = plan(load_experiment(path, overrides, preset))
    if stage_names:
        unknown = set(stage_names) - {p.stage.name for p in planned}
        if unknown:
            raise ConfigError(f"{path}: no stage named {', '.join(sorted(unknown))} "
                              f"(stages: {', '.join(p.stage.name for p in planned)})")
        return [p for p in planned if p.stage.name in stage_names]
    chosen = [p for p in planned if p.stage.kind in kinds]
    if not chosen:
        listing = ", ".join(f"{p.stage.name} ({p.stage.kind})" for p in planned)
        raise ConfigError(f"{path}: has no {'/'.join(kinds)} stage (its stages: {listing}); "
                          "use the matching command or `ser-cl run`")
    return chosen
