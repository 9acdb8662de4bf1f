"""A fold folder's records: which config it was trained with (``fingerprint.json``, the resolved
config, flat; ``config.toml``), the check that refuses to resume or reuse a fold trained under
another config, its ``split.json``, and its completion marker (metrics.json, status "complete")."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from ser_cl.config import ConfigError, StageConfig, as_table, to_toml
from ser_cl.data.splits.folds import Fold
from ser_cl.io import write_json, write_text
from ser_cl.train.fold_lock import LOCK_FILE


def complete_metrics(fold_dir: Path) -> Optional[Dict[str, Any]]:
    """The fold's metrics.json if it says the fold is complete, else None (also when unreadable)."""
    try:
        done = json.loads((Path(fold_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return done if done.get("status") == "complete" else None


def fold_is_complete(fold_dir: Path) -> bool:
    """Whether training wrote the fold's completion marker (metrics.json, status "complete")."""
    return complete_metrics(fold_dir) is not None


def write_split(fold_dir: Path, store, fold: Fold) -> None:
    """``split.json``: the fold's speakers (``train_speakers``: of data.dir's training utterances)
    and the utterance ids of its three parts (ids of data.dir's store); training copies (``data.train_copies``) as ``<copy store>:<id>`` under
    ``train_copies``."""
    n_target = getattr(store, "n_target", len(store))
    speakers = getattr(store, "speakers", None)
    split = {"fold": fold.name, "val_speakers": fold.val_speakers, "test_speakers": fold.test_speakers,
             **({"train_speakers": sorted({speakers[i] for i in fold.train if i < n_target})} if speakers else {}),
             **{part: [store.utt_ids[i] for i in getattr(fold, part) if i < n_target] for part in ("train", "val", "test")}}
    if n_target < len(store):
        split["train_copies"] = [store.utt_ids[i] for i in fold.train if i >= n_target]
    write_json(fold_dir / "split.json", split)


def begin_fold(cfg: StageConfig, store, fold: Fold, fold_dir: Path) -> None:
    """Create the fold folder with its resolved ``config.toml`` and ``split.json``."""
    Path(fold_dir).mkdir(parents=True, exist_ok=True)
    write_text(Path(fold_dir) / "config.toml", to_toml(cfg))
    write_split(Path(fold_dir), store, fold)




# Keys that do not change what a fold learns: where it is written, on which device, how it is
# shown, and how batches reach the device (the same batches either way).
FINGERPRINT_IGNORES = ("experiment", "name", "description", "runs_dir", "device", "probe", "thesis", "sweep",
                       "data.eval_batch_size", "data.prefetch", "data.store_on_device", "model.gru_impl",
                       "data.test_on", "data.class_map",  # cross-corpus tests happen after training
                       "optim.tensorboard")  # a mirror of metrics.jsonl: any value, the same fold
# Keys added after runs existed, left out while at their default (the value those runs trained
# with), so that a pretrained fold's fingerprint.json, and the hash of it that its fine-tuning
# folds keep (source.config), stay what they were.
OMITTED_AT_DEFAULT = {"optim.ema_decay": 0.0, "augment.view_frames": 0, "optim.refit_head": False,
                      "data.val_speakers": 1, "data.n_folds": 5, "data.folds_file": "", "model.input_dropout": None,
                      "optim.keep": "best", "data.train_copies": [], "optim.schedule": "plateau", "optim.step_epochs": 10,
                      "model.mlp_hidden": None, "model.mlp_dropout": None}


BASELINE_RULE = 2  # a baseline fold of another rule is refused, not reused


def config_fingerprint(cfg: StageConfig, source_checkpoint: Optional[Path] = None) -> Dict[str, object]:
    """The resolved config as flat ``section.key -> value`` (ignoring FINGERPRINT_IGNORES), plus
    ``source.config`` (a hash of the pretrained fold's config) when fine-tuning one."""
    flat: Dict[str, object] = {}

    def walk(prefix: str, table: Dict[str, object]) -> None:
        for key, value in table.items():
            dotted = f"{prefix}{key}"
            if dotted in FINGERPRINT_IGNORES or OMITTED_AT_DEFAULT.get(dotted, object()) == value:
                continue
            if isinstance(value, dict):
                walk(dotted + ".", value)
            else:
                flat[dotted] = value

    table = as_table(cfg)
    if cfg.kind != "baseline":  # the [baseline] table was added after runs existed; only baselines read it
        table.pop("baseline")
    walk("", table)
    if cfg.kind == "baseline":  # 2: C by leave-one-speaker-out over every non-test speaker (1: on a validation speaker)
        flat["baseline.rule"] = BASELINE_RULE
    if source_checkpoint is not None:
        src = Path(source_checkpoint).parent / "fingerprint.json"
        text = src.read_text() if src.is_file() else ""
        flat["source.config"] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return flat


def check_fold_config(fold_dir: Path, fingerprint: Dict[str, object], restart: bool) -> None:
    """Refuse to resume or reuse a fold trained under another config (or clear it: ``restart``)."""
    path = fold_dir / "fingerprint.json"
    if restart and fold_dir.exists():
        for child in fold_dir.iterdir():  # all but this process's lock (ser_cl.train.fold_lock)
            if child.name == LOCK_FILE:
                continue
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        return
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text())
    except ValueError:
        before = {}
    # a key that a later version added, at its default value, trains what the fold was trained with
    defaults = config_fingerprint(StageConfig())
    changed = sorted(k for k in set(before) | set(fingerprint) if before.get(k) != fingerprint.get(k)
                     and not (k not in before and k in defaults and fingerprint.get(k) == defaults[k]))
    if changed:
        shown = ", ".join(f"{k}: {before.get(k)!r} -> {fingerprint.get(k)!r}" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(f"{fold_dir}: trained with another config ({shown}{more}); "
                          "write to a new runs_dir (--set runs_dir=runs/NEW) or pass --restart to clear this fold")
