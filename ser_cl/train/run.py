"""From an experiment file to fold directories: plan stages and sweeps, then train each fold.

Layout written here (see the README, "Run directory"):
``runs/<experiment>/<variant>/run.json`` and ``runs/<experiment>/<variant>/fold-NN/...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm.auto import tqdm

from ser_cl.config import ConfigError, StageConfig, Variant, expand, load_experiment
from ser_cl.data.folds import make_folds
from ser_cl.data.store import FeatureStore
from ser_cl.io import write_json
from ser_cl.train import distributed
from ser_cl.train.loop import resolve_device, train_fold


@dataclass
class PlannedStage:
    stage: StageConfig
    variants: List[Variant]


def fold_is_complete(fold_dir: Path) -> bool:
    """Whether training wrote the fold's completion marker (metrics.json, status "complete")."""
    try:
        return json.loads((Path(fold_dir) / "metrics.json").read_text()).get("status") == "complete"
    except (OSError, ValueError):
        return False


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


def run_variant(variant: Variant, folds: Optional[Sequence[int]] = None, device_spec: Optional[str] = None,
                progress: bool = True) -> Path:
    """Train the selected folds (1-based numbers; all when None) of one variant."""
    cfg = variant.config
    device = distributed.setup() or resolve_device(device_spec or cfg.device)  # torchrun: this rank's GPU
    store = FeatureStore(cfg.data.dir)
    all_folds = make_folds(store, cfg.data.protocol)
    out = variant_dir(cfg, variant.name)
    source = source_dir_of(variant)
    if source is not None:
        info = json.loads((source / "run.json").read_text()) if (source / "run.json").is_file() else None
        if info is None:
            raise ConfigError(f"{source}: no run.json; run the pretraining stage first")
        if info["folds"] != [f.name for f in all_folds]:
            raise ConfigError(f"{source}: its folds {info['folds']} differ from this data's protocol")
    selected = [f for k, f in enumerate(all_folds, 1) if not folds or k in folds]
    if folds and len(selected) != len(set(folds)):
        raise ConfigError(f"--fold must be between 1 and {len(all_folds)} (protocol {cfg.data.protocol})")
    if distributed.is_main():
        write_json(out / "run.json", {
            "experiment": cfg.experiment, "variant": variant.name, "stage": cfg.kind, "description": cfg.description,
            "data_dir": str(Path(cfg.data.dir).resolve()), "protocol": cfg.data.protocol,
            "folds": [f.name for f in all_folds], "sweep": variant.sweep, "thesis": cfg.thesis,
            "classes": list(store.classes), "head": cfg.has_head,
            "source": str(source) if source is not None else None,
        })
    for fold in tqdm(selected, desc=f"{cfg.experiment}/{variant.name}", unit="fold", disable=not progress):
        src_ckpt = source / fold.name / "best.pt" if source is not None else None
        if src_ckpt is not None and not src_ckpt.is_file():
            raise ConfigError(f"{src_ckpt}: missing; pretrain {source} (fold {fold.name}) before fine-tuning it")
        train_fold(cfg, store, fold, out / fold.name, device, source_checkpoint=src_ckpt, progress=progress)
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
