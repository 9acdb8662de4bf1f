"""Multi-stage experiments and the built-in quickstart: stages -> folds -> probe, in order.

Used by ``ser-cl run`` and ``ser-cl quickstart``, and by ``ser-cl train / pretrain / finetune``
(``train_planned``, ``dry_run_plan``, ``front_end_warnings``). Every step skips work that is
already complete, so re-running the same command resumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ser_cl.config import STAGE_KINDS, ConfigError
from ser_cl.eval.run_probe import probe_run
from ser_cl.experiment import FRONT_END_KEYS, _read_toml, front_end_table, resolve_preset
from ser_cl.train import distributed
from ser_cl.train.workers import exit_with_parent, start_worker
from ser_cl.train.run import (ALL_RUNS, SHARED_POOLS_ENV, SHARED_POOLS_ONLY, SHARED_POOLS_TRAINED, PlannedStage,
                              run_variant, select_stages)

ROOT = Path(__file__).resolve().parents[1]


def plan_experiment(experiment: str | Path, overrides: Sequence[str] = (), preset: Optional[str] = None,
                    stages: Optional[Sequence[str]] = None) -> List[PlannedStage]:
    """All stages of the file (or only those named), their sweeps expanded."""
    return select_stages(experiment, STAGE_KINDS, list(overrides), stages, preset)


def run_experiment(planned: List[PlannedStage], folds: Optional[Sequence[int]] = None,
                   device: Optional[str] = None, progress: bool = True, restart: bool = False,
                   pools: Optional[str] = None) -> Optional[Path]:
    """Train every variant of every stage in order, probing those with ``probe = true`` and
    testing those with a classifier head on ``data.test_on`` (cross-corpus, ``cross.json``).

    ``restart`` clears the selected folds of every stage before training them. ``pools``: how a
    pool pretraining that serves every fold is run (``ser_cl.train.run.ALL_RUNS`` etc.; None:
    SHARED_POOLS_TRAINED in a ``--devices`` worker, whose parent trained it, else ALL_RUNS).
    Returns the experiment's run directory (``runs/<experiment>``).
    """
    from ser_cl.eval.cross_corpus import check_cross_config, cross_test_run

    exit_with_parent()  # a --devices worker: ends when the process that started it is gone
    if pools is None:
        pools = SHARED_POOLS_TRAINED if os.environ.get(SHARED_POOLS_ENV) == "1" else ALL_RUNS

    for p in planned:  # a test store that cannot be used fails now, not after hours of training
        for v in p.variants:
            if v.config.data.test_on and v.config.has_head:
                check_cross_config(v.config.data.dir, v.config.data.test_on, v.config.data.class_map)
    exp_dir = None
    for p in planned:
        for v in p.variants:
            out = run_variant(v, folds, device, progress=progress, restart=restart, pools=pools)
            if out is None:  # SHARED_POOLS_ONLY: not a pool for every fold; the workers run it
                continue
            exp_dir = out.parent
            if pools == SHARED_POOLS_ONLY:  # probes and tests: in the workers, after their folds
                continue
            if v.config.probe and v.config.kind != "baseline" and distributed.is_main():  # a baseline has no encoder
                probe_run(out, folds, device or v.config.device, progress=progress, skip_done=True)
            if v.config.data.test_on and v.config.has_head and distributed.is_main():
                cross_test_run(out, v.config.data.test_on, v.config.data.class_map, device or v.config.device,
                               folds, progress=progress, skip_done=True, batch_size=v.config.data.eval_batch_size)
            distributed.barrier()
    return exp_dir


def find_quickstart() -> Path:
    for base in (Path.cwd(), ROOT):
        if (base / "experiments" / "quickstart.toml").is_file():
            return base / "experiments" / "quickstart.toml"
    raise FileNotFoundError("experiments/quickstart.toml not found: run from the ser-cl repository root")


QUICKSTART_STEPS = 4  # synthesize, prepare, train (+ probe), report (the CLI prints the report)


def quickstart(data_root: Path, runs_dir: Path, per_speaker: int = 6, device: Optional[str] = None,
               progress: bool = True, say: Callable[[str], None] = lambda line: None) -> Path:
    """Synthetic corpus -> prepare -> self-supervised NT-Xent -> CE fine-tuning -> probe.

    ``say`` gets one "step k/4: ..." line as each step starts (a step already done says so).
    """
    from ser_cl.data.stores.prepare import prepare
    from ser_cl.data.corpora.synth import synthesize_corpus

    raw, data_dir = data_root / "raw", data_root / "data"
    n = QUICKSTART_STEPS
    if not (raw / "Session5").is_dir():
        say(f"step 1/{n}: synthesizing a 10-speaker corpus in {raw}")
        synthesize_corpus(raw, per_speaker=per_speaker, seed=0)
    else:
        say(f"step 1/{n}: synthetic corpus already in {raw}")
    if not (data_dir / "prepare.json").is_file():
        say(f"step 2/{n}: preparing features into {data_dir}")
        prepare(raw, data_dir, progress=progress)
    else:
        say(f"step 2/{n}: features already prepared in {data_dir}")
    overrides = [f'data.dir="{data_dir.resolve()}"', f'runs_dir="{runs_dir}"']
    say(f"step 3/{n}: training {find_quickstart()} (NT-Xent pretraining -> CE fine-tuning -> probe; "
        "finished folds are skipped)")
    exp_dir = run_experiment(plan_experiment(find_quickstart(), overrides), device=device, progress=progress)
    assert exp_dir is not None
    return exp_dir


def train_planned(planned: List[PlannedStage], folds: Optional[Sequence[int]] = None, device: Optional[str] = None,
                  restart: bool = False) -> Iterator[Path]:
    """``ser-cl train / pretrain / finetune``: train every variant of the planned stages in order,
    yielding each variant's run directory as it is done (no probe, no cross-corpus test)."""
    from ser_cl.train import run as train_run  # looked up when called: tests replace run_variant

    for p in planned:
        for v in p.variants:
            yield train_run.run_variant(v, folds, device, restart=restart)


def planned_stores(planned: List[PlannedStage]) -> List[str]:
    """Every store the planned variants read (data.dir and data.pool), in order, once each."""
    return list(dict.fromkeys(d for p in planned for v in p.variants for d in [v.config.data.dir, *v.config.data.pool]))


def front_end_warnings(planned: List[PlannedStage], preset: Optional[str], force: bool = False) -> List[str]:
    """``check_front_end`` on every store of the plan: the stores must hold the front-end the
    preset was chosen for (ConfigError; with ``force`` the warning lines instead)."""
    return check_front_end(preset, planned_stores(planned), force)


def dry_run_plan(planned: List[PlannedStage], folds: Optional[Sequence[int]] = None) -> List[str]:
    """``--dry-run``: check the data as training would, then one line per variant (stage kind, run
    directory, ``<- source`` of a fine-tuning, and the folds it would train: how many of the
    protocol's, their names, "(complete)" after those already trained).

    Fails where training would: every store must be prepared (FileNotFoundError, the one-line
    "prepare.json is missing ..."), and each of ``folds`` one of its protocol's folds (the same
    check and message as training's)."""
    from ser_cl.data.splits.folds import make_folds_for
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.train.run import _select_folds, variant_dir

    from ser_cl.train.fingerprint import fold_is_complete

    stores = {d: FeatureStore(d) for d in planned_stores(planned)}
    lines = []
    for p in planned:
        for v in p.variants:
            cfg = v.config
            store = stores[cfg.data.dir]
            all_folds = make_folds_for(store, cfg.data) if store.labeled else []
            chosen = _select_folds(all_folds, folds, cfg)  # raises "--fold must be between 1 and N (protocol P)"
            out = variant_dir(cfg, v.name)
            src = f"  <- {v.source or cfg.finetune.source}" if cfg.finetune.source else ""
            if (cfg.data.pool and cfg.kind == "pretrain") or not store.labeled:
                names = "a pool pretraining (one run for every fold, or one per fold)"
            else:
                names = ", ".join(f.name + (" (complete)" if fold_is_complete(out / f.name) else "") for f in chosen)
                names = f"{len(chosen)} of {len(all_folds)}: {names}"
            lines.append(f"{p.stage.kind:9s} {out}{src}  folds {names}")
    return lines


def worker_argv(experiment: str | Path, overrides: Sequence[str] = (), preset: Optional[str] = None,
                stages: Optional[Sequence[str]] = None, restart: bool = False, force: bool = False) -> List[str]:
    """The ``ser-cl run`` arguments every ``--devices`` worker gets (``run_on_devices`` adds its
    ``--device`` and ``--fold``s)."""
    argv = [str(experiment)] + [a for s in overrides for a in ("--set", s)]
    argv += (["--preset", preset] if preset else []) + [a for s in (stages or []) for a in ("--stage", s)]
    argv += ["--restart"] if restart else []
    argv += ["--force"] if force else []
    return argv


def run_experiment_on_devices(planned: List[PlannedStage], argv: Sequence[str], devices: Sequence[str],
                              folds: Optional[Sequence[int]] = None, restart: bool = False) -> Path:
    """``run_on_devices`` over the experiment's folds; returns its run directory (``runs/<experiment>``)."""
    run_on_devices(argv, devices, fold_count(planned), folds, planned=planned, restart=restart)
    return Path(planned[0].stage.runs_dir) / planned[0].stage.experiment


def fold_count(planned: List[PlannedStage]) -> int:
    """How many folds the experiment's protocol gives on its data."""
    from ser_cl.data.splits.folds import make_folds_for
    from ser_cl.data.stores.store import FeatureStore

    cfg = planned[0].variants[0].config
    return len(make_folds_for(FeatureStore(cfg.data.dir), cfg.data))


def run_on_devices(argv: Sequence[str], devices: Sequence[str], n_folds: int,
                   folds: Optional[Sequence[int]] = None, *, planned: List[PlannedStage], restart: bool = False,
                   progress: bool = True) -> None:
    """Scale-out on one machine: one worker process per device, folds dealt out round-robin.

    A pool pretraining that serves every fold (run folder ``pool``) is one run, not one per
    fold: this process trains it first, alone, on the first device (``restart``: clearing it
    once). Then each worker is ``ser-cl run <argv> --device D --fold ...`` and runs every stage
    for its folds in order (a fine-tuning stage only needs the same fold's pretraining, or that
    pool), so workers never wait on each other; they take the pool as trained (SHARED_POOLS_ENV)
    and never train or clear it. Files are written atomically, so the shared run.json is safe.
    Each worker ends when this process ends, however it ends (``ser_cl.train.workers``), and
    holds the lock of each fold it trains (``ser_cl.train.fold_lock``), so a second run of the
    same command skips the folds that live workers hold.
    """
    import sys

    run_experiment(planned, folds, devices[0], progress=progress, restart=restart, pools=SHARED_POOLS_ONLY)
    todo = list(folds) if folds else list(range(1, n_folds + 1))
    # CPU workers share the cores: each gets its share of threads. Two processes that each spin
    # up a thread per core on the same cores slow each other down ~10x (measured on 2 cores).
    n_cpu = sum(1 for d in devices if d.startswith("cpu"))
    cpu_threads = str(max(1, (os.cpu_count() or 1) // max(n_cpu, 1)))
    procs = []
    for i, device in enumerate(devices):
        mine = todo[i::len(devices)]
        if not mine:
            continue
        cmd = [sys.executable, "-m", "ser_cl.cli", "run", *argv, "--device", device, "--no-report"]
        for k in mine:
            cmd += ["--fold", str(k)]
        env = dict(os.environ, **{SHARED_POOLS_ENV: "1"})
        if device.startswith("cpu") and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = cpu_threads
        procs.append((device, mine, start_worker(cmd, env)))  # ends when this process does, even on kill -9
    failed = [(d, m) for d, m, p in procs if p.wait() != 0]
    if failed:
        raise RuntimeError("worker(s) failed: " + "; ".join(f"{d} (folds {m})" for d, m in failed)
                           + "; re-run the same command to resume")


# -- the front-end a preset was chosen for ---------------------------------------------------------
# A preset's [front_end] table names the feature store its values were chosen on, with the flags
# of `ser-cl prepare`: features = "mel" | "spectrogram", and for "mel" n_mels (f_min, f_max: only
# when they were chosen too). Training on a store with another front-end stops (``check_front_end``).
def _front_end(table: Any, preset: str) -> Optional[Dict[str, Any]]:
    """A preset's [front_end] table, its keys checked (``front_end_table``) and its values checked
    as `ser-cl prepare` would; None if none is declared. ConfigError names the preset."""
    from ser_cl.data.frontends.features import feature_params

    table = front_end_table(table, preset)
    if table is None:
        return None
    if table["features"] == "ssl":  # any upstream: no parameters of prepare's own to check
        return table
    try:
        feature_params(table["features"], **{k: table.get(k) for k in FRONT_END_KEYS[1:]})
    except (ValueError, TypeError) as err:
        raise ConfigError(f"preset '{preset}': [front_end]: {err}") from None
    return table


def preset_front_end(preset: Optional[str]) -> Optional[Dict[str, Any]]:
    """The front-end a preset declares it was chosen for (its [front_end] table), or None."""
    if not preset:
        return None
    return _front_end(_read_toml(resolve_preset(preset), "preset").get("front_end"), preset)


def _describe_front_end(kind: str, n_freq: int, f_range: Optional[Tuple[Any, Any]] = None) -> str:
    if kind == "spectrogram":
        return f"{n_freq}-bin spectrograms"
    if kind == "ssl":
        return f"{n_freq}-dimensional self-supervised upstream features"
    if kind == "functionals":
        return f"{n_freq} openSMILE functionals per utterance"
    span = f" ({f_range[0]:g}-{f_range[1]:g} Hz)" if f_range else ""
    return f"{n_freq}-band log-mel features{span}"


def front_end_mismatch(preset: str, declared: Dict[str, Any], data_dir: str | Path) -> Optional[str]:
    """Why the store at ``data_dir`` does not hold the front-end ``declared`` (a preset's
    [front_end]), with the `ser-cl prepare` command that makes one that does; None if it does, or
    if the store cannot be read (the data check, or training, says why)."""
    import re
    import shlex

    from ser_cl.data.frontends.features import canonical_params, feature_kind, feature_params
    from ser_cl.data.stores.store import FeatureStore

    try:
        store = FeatureStore(data_dir)
        have = canonical_params(store.feature_params) if store.feature_params else {"name": "spectrogram"}
        have_kind = feature_kind(have)
    except (OSError, ValueError):
        return None
    kind = declared["features"]
    if kind == "ssl":  # a store of any upstream's hidden states
        if have_kind == "ssl":
            return None
        out = str(data_dir).rstrip("/\\") + "-ssl"
        command = f"ser-cl prepare {shlex.quote(str(store.info.get('source') or 'CORPUS'))} --out {shlex.quote(out)} " \
                  "--features ssl --upstream DIR --layers all"
        return (f"preset '{preset}' was chosen for self-supervised upstream features, but {data_dir} holds "
                f"{_describe_front_end(have_kind, store.n_freq)}: prepare the corpus for it with `{command}` and "
                f"--set data.dir={shlex.quote(out)}, or pass --force to train on {data_dir} anyway")
    # the declared front-end with prepare's defaults filled in (n_freq, a functionals feature set)
    wanted = feature_params(kind, **{k: declared.get(k) for k in FRONT_END_KEYS[1:]})
    n_freq, feature_set = int(wanted["n_freq"]), wanted.get("feature_set")
    keys = [k for k in ("f_min", "f_max") if declared.get(k) is not None]
    same = (have_kind == kind and store.n_freq == n_freq and have.get("feature_set") == feature_set
            and all(float(have.get(k, -1)) == float(declared[k]) for k in keys))
    if same:
        return None
    want_range = (declared.get("f_min", 0), declared.get("f_max", 8000)) if keys else None
    have_range = (have.get("f_min"), have.get("f_max")) if keys and have_kind == "mel" else None
    want = _describe_front_end(kind, n_freq, want_range)
    held = _describe_front_end(have_kind, store.n_freq, have_range)
    flags = ["--features", kind]
    if kind == "functionals":
        flags += ["--feature-set", feature_set]
    if kind == "mel":
        flags += ["--n-mels", str(n_freq)] + [a for k in keys for a in (f"--{k.replace('_', '-')}", f"{declared[k]:g}")]
    if store.info.get("corpus") == "unlabeled":
        flags += ["--corpus", "unlabeled"]
    stem = re.sub(r"-(mel\d*|spec(trogram)?|compare|egemaps)$", "", str(data_dir).rstrip("/\\"))
    suffix = {"mel": f"mel{n_freq}", "functionals": "compare" if feature_set == "ComParE_2016" else "egemaps"}
    out = f"{stem}-{suffix.get(kind, 'spec')}"
    corpus = store.info.get("source") or "CORPUS"
    command = " ".join(shlex.quote(str(a)) for a in ["ser-cl", "prepare", corpus, "--out", out, *flags])
    return (f"preset '{preset}' was chosen for {want}, but {data_dir} holds {held}: its values are not tuned "
            f"for them; prepare the corpus for it with `{command}` and --set data.dir={shlex.quote(out)}, "
            f"or pass --force to train on {data_dir} anyway")


def check_front_end(preset: Optional[str], data_dirs: Sequence[str | Path], force: bool = False) -> List[str]:
    """Check that each store in ``data_dirs`` holds the front-end the preset was chosen for.

    A mismatch raises a one-line ConfigError with the `ser-cl prepare` command to run; with
    ``force``, it is returned as a warning line instead (one per store). A preset without a
    [front_end] table (or no preset) checks nothing.
    """
    declared = preset_front_end(preset)
    if declared is None:
        return []
    warnings = []
    for data_dir in dict.fromkeys(str(d) for d in data_dirs):
        problem = front_end_mismatch(str(preset), declared, data_dir)
        if problem is None:
            continue
        if not force:
            raise ConfigError(problem)
        warnings.append(problem.split("; prepare the corpus", 1)[0] + "; going on (--force)")
    return warnings
