"""Experiment files: TOML -> stages (``load_experiment``), with presets and ``--set`` overrides,
and each stage's sweep expanded into variants (``expand``).

An experiment file holds one or more *stages* (train, pretrain, finetune). A file without
``[[stages]]`` is a single stage whose kind is ``stage = "..."`` at the top level. Each stage
may carry a ``sweep`` table of lists that expands into variants (the cartesian product).

Precedence, lowest first: dataclass defaults < the file's top-level tables < the stage's own
tables < a ``--preset`` file's tables < its ``[kind.<train|pretrain|finetune>]`` tables (for
stages of that kind only) < ``--set key=value`` overrides from the command line < ``--set
kind.<train|pretrain|finetune>.key=value`` overrides (for stages of that kind only). A key that
is overridden on the command line is removed from every sweep (the override fixes it).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, get_type_hints

from ser_cl.config import (SECTIONS, STAGE_KINDS, STAGE_SCALARS, ConfigError, StageConfig, _coerce, _toml_keys,
                           as_table, stage_from_dict)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _deep_merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("sweep", "thesis"):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_dotted(table: Dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = table
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a table")
    node[parts[-1]] = value


def parse_override(text: str) -> Tuple[str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``; values are TOML, else plain strings."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. optim.epochs=5")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def check_override(text: str, key: str, value: Any) -> Tuple[Optional[str], str]:
    """Raise a ConfigError that blames ``--set TEXT`` when its key is unknown or its value mistyped;
    return ``(kind, key)``: the stage kind a ``kind.<kind>.<key>`` override is for (None: every
    stage) and the key it sets.

    Done before the override is merged, so that such a mistake is never reported against the
    experiment file (whose own keys are checked, and blamed on it, by ``stage_from_dict``).
    """
    where = f"--set {text}"
    parts = key.split(".")
    kind = None
    if parts[0] == "kind":  # kind.<stage kind>.<key>: the key, for stages of that kind only
        if len(parts) < 3 or parts[1] not in STAGE_KINDS:
            raise ConfigError(f"{where}: a per-kind override looks like kind.<{'|'.join(STAGE_KINDS)}>.<key>=..., "
                              "e.g. --set kind.finetune.optim.lr=1e-3")
        kind, key, parts = parts[1], ".".join(parts[2:]), parts[2:]
        if key == "stage":
            raise ConfigError(f"{where}: a stage's kind cannot be overridden per kind")
    dotted = [f"{name}.{k}" for name, cls in SECTIONS.items() for k in _toml_keys(cls)]
    known = sorted(set(dotted) | set(STAGE_SCALARS) | {"stage"})

    def unknown() -> ConfigError:
        hint = difflib.get_close_matches(key, known, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        return ConfigError(f"{where}: unknown key '{key}'{extra}")

    head = parts[0]
    if head in ("thesis", "sweep"):  # free-form tables
        return kind, key
    if head in SECTIONS:
        if len(parts) == 1:
            example = next(iter(_toml_keys(SECTIONS[head])))
            raise ConfigError(f"{where}: '{head}' is a table; set one of its keys, e.g. --set {head}.{example}=...")
        keys = _toml_keys(SECTIONS[head])
        if len(parts) != 2 or parts[1] not in keys:
            raise unknown()
        _coerce(value, get_type_hints(SECTIONS[head])[keys[parts[1]]], key, where)
    elif len(parts) == 1 and head == "stage":
        _coerce(value, str, key, where)
    elif len(parts) == 1 and head in STAGE_SCALARS:
        _coerce(value, get_type_hints(StageConfig)[head], key, where)
    else:
        raise unknown()
    return kind, key


def _read_toml(path: Path, what: str) -> Dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found (see experiments/ for examples)")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def resolve_preset(name: str) -> Path:
    """A preset is a TOML file of overrides: a path, or a name in experiments/presets/."""
    path = Path(name)
    if path.is_file():
        return path
    for base in (Path.cwd() / "experiments" / "presets", Path(__file__).resolve().parents[1] / "experiments" / "presets"):
        if (base / f"{name}.toml").is_file():
            return base / f"{name}.toml"
    raise ConfigError(f"preset '{name}' not found: give a TOML file or a name from experiments/presets/")


def load_experiment(path: str | Path, overrides: Optional[List[str]] = None,
                    preset: Optional[str] = None) -> List[StageConfig]:
    """Read an experiment TOML into its stages (before sweep expansion).

    ``preset`` (a TOML file of tables) is merged over every stage, then ``overrides``.
    """
    path = Path(path)
    raw = _read_toml(path, "experiment file")
    preset_table = _read_toml(resolve_preset(preset), "preset") if preset else {}
    # [kind.train] / [kind.pretrain] / [kind.finetune]: a preset's tables for stages of one kind
    by_kind = preset_table.pop("kind", {}) if isinstance(preset_table.get("kind", {}), dict) else None
    if by_kind is None or not set(by_kind) <= set(STAGE_KINDS):
        raise ConfigError(f"preset '{preset}': [kind.X] tables must be named after stage kinds {STAGE_KINDS}")
    parsed = []  # (kind or None, key, value); plain overrides first, so kind.<kind>.* ones win
    for text in overrides or []:
        key, value = parse_override(text)
        parsed.append((*check_override(text, key, value), value))
    parsed.sort(key=lambda entry: entry[0] is not None)
    raw.setdefault("experiment", path.stem)
    stage_tables = raw.pop("stages", None)
    if stage_tables is None:
        stage_tables = [{}]
        raw.setdefault("name", raw.get("stage", "train"))
    elif not isinstance(stage_tables, list) or not all(isinstance(s, dict) for s in stage_tables):
        raise ConfigError(f"{path}: 'stages' must be an array of tables ([[stages]])")
    base_sweep = raw.pop("sweep", {})
    stages = []
    for i, table in enumerate(stage_tables):
        merged = _deep_merge(raw, table)
        if "sweep" not in table and len(stage_tables) == 1:
            merged["sweep"] = base_sweep
        merged.setdefault("name", merged.get("stage", f"stage{i + 1}"))
        merged = _deep_merge(merged, preset_table)
        merged = _deep_merge(merged, by_kind.get(merged.get("stage", "train"), {}))
        for kind, key, value in parsed:
            if kind is not None and kind != merged.get("stage", "train"):
                continue
            _set_dotted(merged, key, value)
            merged.get("sweep", {}).pop(key, None)
        where = f"{path} (stage '{merged['name']}')" if len(stage_tables) > 1 else str(path)
        stages.append(stage_from_dict(merged, where))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: stage names must be unique, got {names}")
    for s in stages:
        src = s.finetune.source
        if src in names and names.index(src) >= names.index(s.name):
            raise ConfigError(f"{path}: stage '{s.name}' fine-tunes '{src}', which must come before it")
    return stages


def _short(key: str) -> str:
    return key.split(".")[-1]


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) and value != int(value) else str(value)


@dataclass
class Variant:
    """One expanded sweep point of one stage."""

    config: StageConfig
    name: str  # directory name under runs/<experiment>/
    sweep: Dict[str, Any]  # key -> value of this variant (including inherited from its source)
    source: Optional[str] = None  # variant name of the stage it fine-tunes (same experiment)


def expand(stage: StageConfig, source_variants: Optional[List[Variant]] = None) -> List[Variant]:
    """Expand the sweep of ``stage``; a finetune of an earlier stage fans out over its variants."""
    keys = list(stage.sweep)
    points = list(itertools.product(*[stage.sweep[k] for k in keys])) or [()]
    parents: List[Optional[Variant]] = list(source_variants) if source_variants else [None]
    out = []
    for parent in parents:
        for point in points:
            table = as_table(stage)
            sweep = dict(parent.sweep) if parent else {}
            for key, value in zip(keys, point):
                _set_dotted(table, key, value)
                sweep[key] = value
            table["sweep"] = {}
            cfg = stage_from_dict(table, f"stage '{stage.name}'")
            suffix = "".join(f"_{_short(k)}={_fmt(v)}" for k, v in sweep.items())
            per_variant = cfg.thesis.pop("variants", {})
            cfg.thesis.update(per_variant.get(suffix.lstrip("_"), {}))
            out.append(Variant(cfg, stage.name + suffix, sweep, parent.name if parent else None))
    return out
