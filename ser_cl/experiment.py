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

A preset may name the front-end its values were chosen for (``[front_end]``: ``features``,
``n_mels``; ``check_front_end`` refuses a data store with another one), and each stage it
changes says so at the end of its description (``; preset NAME: augmentation on, key=value, ...``).
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


def _preset_dirs() -> List[Path]:
    return [Path.cwd() / "experiments" / "presets", Path(__file__).resolve().parents[1] / "experiments" / "presets"]


def preset_names() -> List[str]:
    """The names ``--preset`` knows (the files of experiments/presets/), sorted."""
    return sorted({p.stem for base in _preset_dirs() if base.is_dir() for p in base.glob("*.toml")})


def resolve_preset(name: str) -> Path:
    """A preset is a TOML file of overrides: a path, or a name in experiments/presets/."""
    path = Path(name)
    if path.is_file():
        return path
    for base in _preset_dirs():
        if (base / f"{name}.toml").is_file():
            return base / f"{name}.toml"
    names = preset_names()
    hint = difflib.get_close_matches(name, names, n=1)
    extra = f" (did you mean '{hint[0]}'?)" if hint else ""
    raise ConfigError(f"preset '{name}' not found{extra}; presets: {', '.join(names) or 'none'}, "
                      "or give a TOML file")


# -- the front-end a preset was chosen for ---------------------------------------------------------
# A preset's [front_end] table names the feature store its values were chosen on, with the flags
# of `ser-cl prepare` (``ser_cl.pipeline.check_front_end`` compares it with each store).
FRONT_END_KEYS = ("features", "n_mels", "f_min", "f_max", "feature_set")
FRONT_END_KINDS = ("spectrogram", "mel", "functionals", "ssl")  # ssl: any upstream (prepare --features ssl --upstream DIR)


def front_end_table(table: Any, preset: str) -> Optional[Dict[str, Any]]:
    """A preset's [front_end] table with its keys checked (None: none declared); ConfigError names
    the preset. Its values are checked against `ser-cl prepare`'s by ``ser_cl.pipeline``."""
    if table is None:
        return None
    where = f"preset '{preset}'"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [front_end] must be a table, e.g. [front_end] features = \"mel\", n_mels = 64")
    for key in table:
        if key not in FRONT_END_KEYS:
            hint = difflib.get_close_matches(key, FRONT_END_KEYS, n=1)
            extra = f" (did you mean 'front_end.{hint[0]}'?)" if hint else ""
            raise ConfigError(f"{where}: unknown key 'front_end.{key}'{extra}; keys: {', '.join(FRONT_END_KEYS)}")
    if "features" not in table:
        raise ConfigError(f"{where}: [front_end] needs front_end.features = \"mel\", \"spectrogram\", \"functionals\" or \"ssl\"")
    if table["features"] not in FRONT_END_KINDS:
        raise ConfigError(f"{where}: [front_end]: unknown feature kind {table['features']!r}; "
                          f"expected one of {', '.join(FRONT_END_KINDS)}")
    return dict(table)


def load_experiment(path: str | Path, overrides: Optional[List[str]] = None,
                    preset: Optional[str] = None) -> List[StageConfig]:
    """Read an experiment TOML into its stages (before sweep expansion).

    ``preset`` (a TOML file of tables) is merged over every stage, then ``overrides``.
    """
    path = Path(path)
    raw = _read_toml(path, "experiment file")
    preset_table = _read_toml(resolve_preset(preset), "preset") if preset else {}
    front_end_table(preset_table.pop("front_end", None), str(preset))  # compared with data.dir by the pipeline
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
        own = merged  # the stage without the preset
        applied = _deep_merge(preset_table, by_kind.get(merged.get("stage", "train"), {}))
        merged = _deep_merge(merged, preset_table)
        merged = _deep_merge(merged, by_kind.get(merged.get("stage", "train"), {}))
        fixed = set()  # keys the command line sets: the preset does not decide them
        for kind, key, value in parsed:
            if kind is not None and kind != merged.get("stage", "train"):
                continue
            _set_dotted(merged, key, value)
            merged.get("sweep", {}).pop(key, None)
            fixed.add(key)
        where = f"{path} (stage '{merged['name']}')" if len(stage_tables) > 1 else str(path)
        cfg = stage_from_dict(merged, where)
        if preset:
            fixed |= set(cfg.sweep)  # swept values win over the preset's
            cfg.description = _described_with_preset(cfg, preset, _preset_changes(cfg, own, applied, fixed))
        stages.append(cfg)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: stage names must be unique, got {names}")
    for s in stages:
        src = s.finetune.source
        if src in names and names.index(src) >= names.index(s.name):
            raise ConfigError(f"{path}: stage '{s.name}' fine-tunes '{src}', which must come before it")
    return stages


def _flat_items(table: Dict[str, Any]):
    """``section.key -> value`` of a stage table (in its order); other values are leaves."""
    for key, value in table.items():
        if key in SECTIONS and isinstance(value, dict):
            for k, v in value.items():
                yield f"{key}.{k}", v
        else:
            yield key, value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def _preset_changes(cfg: StageConfig, own: Dict[str, Any], applied: Dict[str, Any], fixed: set) -> List[str]:
    """What a preset changed in one stage, as ``key=value`` (augment.enabled: "augmentation on" /
    "off", first): the keys its tables (``applied``) set to another value than the stage's own
    (``own``, or the default), less those the command line or the stage's sweep sets (``fixed``)."""
    defaults = dict(_flat_items(as_table(StageConfig())))
    before = dict(_flat_items(own))
    touched = {key for key, _ in _flat_items(applied)} - fixed - {"description"}
    changes = []
    for key, value in _flat_items(as_table(cfg)):
        if key in touched and before.get(key, defaults.get(key)) != value:
            if key == "augment.enabled":
                changes.insert(0, "augmentation on" if value else "augmentation off")
            else:
                changes.append(f"{key}={_show(value)}")
    return changes


def _described_with_preset(cfg: StageConfig, preset: str, changes: List[str]) -> str:
    """The stage's description followed by what the preset changed in it: the file's words may
    say otherwise (e.g. "no augmentation" when the preset turns augmentation on)."""
    said = f"preset {preset}: {', '.join(changes) if changes else 'no change to this stage'}"
    return f"{cfg.description}; {said}" if cfg.description else said


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


SEED_KEY = "optim.seed"


def expand(stage: StageConfig, source_variants: Optional[List[Variant]] = None) -> List[Variant]:
    """Expand the sweep of ``stage``; a finetune of an earlier stage fans out over its variants.

    A key swept by both the stage and its source is paired with the source's value, not crossed
    (crossing gave two variants of one name). A stage whose source swept ``optim.seed`` and that
    does not sweep it itself runs with its source's seed (``ft_seed=1`` <- ``pretrain_seed=1``)."""
    keys = list(stage.sweep)
    points = list(itertools.product(*[stage.sweep[k] for k in keys])) or [()]
    parents: List[Optional[Variant]] = list(source_variants) if source_variants else [None]
    out = []
    for parent in parents:
        for point in points:
            inherited = parent.sweep if parent else {}
            if any(key in inherited and inherited[key] != value for key, value in zip(keys, point)):
                continue
            table = as_table(stage)
            sweep = dict(inherited)
            if SEED_KEY in inherited and SEED_KEY not in keys:
                _set_dotted(table, SEED_KEY, inherited[SEED_KEY])
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
