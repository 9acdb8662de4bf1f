"""``ser-cl run EXP.toml --launcher local|slurm``: an experiment's folds as a job array (submitit).

The unit of work is the one ``--devices`` workers use (``ser_cl.pipeline.run_on_devices``): one
task = one fold, every stage of the experiment for that fold in order (pretraining, then the
fine-tunings of it, probes, cross-corpus tests). A fine-tuning fold needs only its own fold's
pretraining, which runs earlier in the same task, so fold tasks never wait on each other. The
one exception is a pool pretraining that serves every fold (run folder ``pool``): it is one
task of its own, run first (as a single job, waited for), and every fold task that fine-tunes
it depends on it and takes it as trained (``SHARED_POOLS_TRAINED``).

``grid_tasks`` lists what is left to do: folds whose every run is complete (metrics.json,
status "complete") are not tasks, so re-running the command submits only the rest. A task
killed mid-run and submitted again resumes each fold after its last finished epoch (last.pt;
the training loop resumes by itself), and on SLURM a task that hits its time limit or is
preempted is requeued by submitit (``FoldTask`` is a ``submitit.helpers.Checkpointable``).

A fold task is never submitted twice: each submission is recorded (``<run dir>/.submitit/
submitted/fold-NN.json``: the job id, host and time), and re-running the command leaves out the
folds whose recorded job is still queued or running (``squeue`` lists it; for the local
launcher, its process runs), and those whose fold folders a live process holds
(``ser_cl.train.fold_lock``), each with one line naming the job or the holder.

``status_lines``: ``ser-cl status RUNS_DIR``, folds complete / started / missing per variant.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ser_cl.pipeline import fold_count, front_end_warnings, plan_experiment, run_experiment
from ser_cl.io import write_json
from ser_cl.progress import progress_bar
from ser_cl.train.fold_lock import LOCK_FILE, live_holder, pid_alive
from ser_cl.train.run import (SHARED_POOLS_ENV, SHARED_POOLS_ONLY, SHARED_POOLS_TRAINED, PlannedStage,
                              fold_is_complete, variant_dir)

try:  # optional extra `slurm`: only ``launch`` needs it; the task list and status do not
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - exercised without the extra
    Checkpointable = object  # type: ignore[misc,assignment]

LAUNCHERS = ("local", "slurm")
SUBMITIT_DIR = ".submitit"  # under runs/<experiment>/: submitit's pickles and each task's logs
SUBMITTED_DIR = "submitted"  # under SUBMITIT_DIR: <task key>.json, the job each fold task was submitted as


@dataclass(frozen=True)
class Task:
    """One job of the array: ``fold`` (1-based) runs every stage for that fold in order; a task
    with ``fold`` None is a pool pretraining that serves every fold (``key`` "pool:<variant>")."""

    key: str
    fold: Optional[int]
    runs: Tuple[str, ...]  # the "<variant>/<fold dir>" runs it still has to complete, in order
    depends_on: Tuple[str, ...] = ()  # keys of the tasks that must finish first


def _pool_for_every_fold(cfg) -> bool:
    """Whether a variant is a pool pretraining that serves every fold (one run folder ``pool``),
    decided as ``ser_cl.train.run._run_pool`` decides it."""
    from ser_cl.data.splits.folds import make_folds_for
    from ser_cl.data.batches.pool import pool_units
    from ser_cl.data.stores.store import FeatureStore

    store = FeatureStore(cfg.data.dir)
    if not ((cfg.data.pool and cfg.kind == "pretrain") or not store.labeled):
        return False
    labeled = store if store.labeled else None
    folds = make_folds_for(labeled, cfg.data) if labeled is not None else []
    per_fold, _ = pool_units(list(cfg.data.pool) or [cfg.data.dir], cfg.data.pool_weights, labeled, folds,
                             cfg.data.pool_val_fraction, cfg.optim.seed, cfg.data.pool_epoch_size)
    return not per_fold


def grid_tasks(planned: List[PlannedStage], folds: Optional[Sequence[int]] = None,
               restart: bool = False) -> List[Task]:
    """The tasks still to run for the selected folds (1-based; all when None), in order: pool
    tasks first, then one task per fold. A fold task lists the runs (``variant/fold-NN``) of that
    fold that are not complete, in stage order, and depends on the incomplete pools its
    fine-tunings start from. Folds with every run complete are left out (``restart``: kept, all
    runs listed: they are cleared and trained again)."""
    from ser_cl.data.splits.folds import make_folds_for
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.train.run import source_dir_of

    n = fold_count(planned)
    numbers = sorted(set(folds)) if folds else list(range(1, n + 1))
    fold_names: Dict[str, List[str]] = {}  # a stage's data config -> the fold names of its protocol
    pools: Dict[Path, str] = {}  # a pool variant's run dir -> its task key (only if incomplete)
    tasks: List[Task] = []
    per_fold: Dict[int, List[Tuple[str, Optional[Path]]]] = {k: [] for k in numbers}
    for p in planned:
        for v in p.variants:
            cfg = v.config
            out = variant_dir(cfg, v.name)
            if _pool_for_every_fold(cfg):
                if restart or not fold_is_complete(out / "pool"):
                    key = f"pool:{p.stage.name}/{v.name}"
                    pools[out.resolve()] = key
                    tasks.append(Task(key, None, (f"{v.name}/pool",)))
                continue
            key = repr(cfg.data)  # each stage's own protocol (a file's folds may be named fold-03, ...)
            if key not in fold_names:
                fold_names[key] = [f.name for f in make_folds_for(FeatureStore(cfg.data.dir), cfg.data)]
            names = fold_names[key]
            source = source_dir_of(v) if cfg.finetune.source else None
            for k in numbers:
                if k <= len(names) and (restart or not fold_is_complete(out / names[k - 1])):
                    per_fold[k].append((f"{v.name}/{names[k - 1]}", source))
    for k in numbers:
        if not per_fold[k]:
            continue
        deps = tuple(dict.fromkeys(pools[s.resolve()] for _, s in per_fold[k]
                                   if s is not None and s.resolve() in pools))
        tasks.append(Task(f"fold-{k:02d}", k, tuple(r for r, _ in per_fold[k]), deps))
    return tasks


@dataclass(frozen=True)
class TaskSpec:
    """What a job needs to rebuild the plan and run its task: the ``ser-cl run`` arguments."""

    experiment: str
    overrides: Tuple[str, ...] = ()
    preset: Optional[str] = None
    stages: Tuple[str, ...] = ()
    folds: Tuple[int, ...] = ()  # the selected folds (a pool task: those its run.json is written for)
    fold: Optional[int] = None  # this task's fold; None: the pools for every fold
    device: Optional[str] = None
    restart: bool = False
    force: bool = False
    threads: int = 0  # torch threads (0: SLURM_CPUS_PER_TASK, else torch's default)
    cwd: str = field(default_factory=os.getcwd)


def run_task(spec: TaskSpec) -> str:
    """Run one task in this process, as a ``--devices`` worker runs its folds: every stage for
    ``spec.fold`` (the pools for every fold taken as trained), or only those pools. Its log gets
    the epoch lines (and "resuming after epoch N"); bars only on a terminal (``progress_bar``)."""
    os.chdir(spec.cwd)
    threads = spec.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if threads:
        import torch

        torch.set_num_threads(threads)
    planned = plan_experiment(spec.experiment, list(spec.overrides), spec.preset, list(spec.stages) or None)
    front_end_warnings(planned, spec.preset, spec.force)
    if spec.fold is None:
        run_experiment(planned, list(spec.folds) or None, spec.device, progress=True, restart=spec.restart,
                       pools=SHARED_POOLS_ONLY)
        return "pool"
    os.environ[SHARED_POOLS_ENV] = "1"
    run_experiment(planned, [spec.fold], spec.device, progress=True, restart=spec.restart,
                   pools=SHARED_POOLS_TRAINED)
    return f"fold-{spec.fold:02d}"


class FoldTask(Checkpointable):
    """``run_task`` as a submitit callable: requeued as it was on a timeout or preemption, and
    resuming each fold from its last.pt."""

    def __call__(self, spec: TaskSpec) -> str:
        return run_task(spec)

    def checkpoint(self, spec: TaskSpec):
        """On a timeout or preemption: the same task again, resuming (never clearing again on --restart)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(type(self)(), replace(spec, restart=False))


@dataclass
class LaunchOptions:
    launcher: str = "local"
    partition: Optional[str] = None
    time_min: Optional[int] = None
    gpus_per_task: Optional[int] = None
    cpus_per_task: Optional[int] = None
    array_parallelism: Optional[int] = None
    wait: bool = True


def _executor(folder: Path, opts: LaunchOptions, name: str):
    try:
        import submitit
    except ImportError:
        raise RuntimeError("--launcher needs submitit: pip install 'ser-cl[slurm]' (or pip install submitit)") from None
    ex = submitit.AutoExecutor(folder=folder, cluster=opts.launcher)
    params = {"name": name, "timeout_min": opts.time_min, "cpus_per_task": opts.cpus_per_task,
              "slurm_partition": opts.partition, "slurm_gpus_per_task": opts.gpus_per_task,
              "slurm_array_parallelism": opts.array_parallelism}
    if opts.launcher == "local":
        params["timeout_min"] = opts.time_min or 7 * 24 * 60
        params["local_gpus_per_node"] = opts.gpus_per_task
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def job_active(record: Dict[str, str]) -> bool:
    """Whether a submitted job (a ``SUBMITTED_DIR`` record) is still queued or running: for SLURM,
    ``squeue`` still lists it; for the local launcher (job id = the task's pid), that process runs
    (a record from another host counts as running). A SLURM that cannot be asked counts as running."""
    job = str(record.get("job", ""))
    if record.get("launcher") == "local":
        return record.get("host") != socket.gethostname() or (job.isdigit() and pid_alive(int(job)))
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return out.returncode == 0 and bool(out.stdout.strip())


def busy_tasks(exp_dir: Path, tasks: List[Task],
               active: Callable[[Dict[str, str]], bool] = job_active) -> Dict[str, str]:
    """Fold task key -> why it must not be submitted now: its recorded job is still queued or
    running (``active``), or a live process holds one of its fold folders (``fold_lock``)."""
    busy = {}
    for t in tasks:
        if t.fold is None:
            continue
        record_path = exp_dir / SUBMITIT_DIR / SUBMITTED_DIR / f"{t.key}.json"
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
        if record and active(record):
            busy[t.key] = (f"{t.key}: not submitted, job {record.get('job')} ({record.get('launcher')}, submitted "
                           f"{record.get('since')}) is still queued or running; cancel it first, or delete "
                           f"{record_path} if it is gone")
            continue
        for run in t.runs:
            holder = live_holder(exp_dir / run / LOCK_FILE)
            if holder is not None:
                busy[t.key] = f"{t.key}: not submitted, {exp_dir / run} is held by {holder.describe()}"
                break
    return busy


def record_submissions(exp_dir: Path, tasks: List[Task], jobs: list, launcher: str) -> None:
    """One ``SUBMITTED_DIR`` record per submitted fold task: the job id, launcher, host, time."""
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    for t, job in zip(tasks, jobs):
        write_json(exp_dir / SUBMITIT_DIR / SUBMITTED_DIR / f"{t.key}.json",
                   {"job": str(job.job_id), "launcher": launcher, "host": socket.gethostname(), "since": since})


def launch(planned: List[PlannedStage], spec: TaskSpec, opts: LaunchOptions, progress: bool = True,
           say: Callable[[str], None] = lambda line: None,
           active: Callable[[Dict[str, str]], bool] = job_active) -> Tuple[Path, List[Task], list]:
    """Submit the experiment's unfinished tasks (``grid_tasks``) with submitit and, unless
    ``opts.wait`` is off, wait for them with a progress bar over the tasks. Pool tasks run first
    as single jobs, always waited for. Returns (run dir, the tasks, the fold jobs). RuntimeError
    names the failed tasks and their logs; re-running the same command submits only the rest,
    never a fold whose job is still queued or running (``busy_tasks``; ``active`` asks the scheduler)."""
    if opts.launcher not in LAUNCHERS:
        raise ValueError(f"--launcher must be one of {', '.join(LAUNCHERS)}; got {opts.launcher!r}")
    exp_dir = Path(planned[0].stage.runs_dir) / planned[0].stage.experiment
    folder = exp_dir / SUBMITIT_DIR
    tasks = grid_tasks(planned, list(spec.folds) or None, restart=spec.restart)
    busy = busy_tasks(exp_dir, tasks, active)
    for line in busy.values():
        say(line)
    tasks = [t for t in tasks if t.key not in busy]
    fold_tasks = [t for t in tasks if t.fold is not None]
    if not tasks:
        if not busy:
            say(f"every selected fold of {exp_dir} is complete: nothing to submit")
        return exp_dir, tasks, []
    name = f"ser-cl-{planned[0].stage.experiment}"
    if any(t.fold is None for t in tasks):
        ex = _executor(folder, opts, name + "-pool")
        job = ex.submit(FoldTask(), replace(spec, fold=None))
        say(f"submitted the pool pretraining for every fold: job {job.job_id} (logs in {folder}); waiting for it")
        try:
            job.result()
        except Exception as err:  # submitit wraps the task's error with its traceback
            raise RuntimeError(f"the pool pretraining failed (job {job.job_id}, logs {folder}): "
                               f"{str(err).strip().splitlines()[-1] if str(err).strip() else err}; "
                               "re-run the same command to resume") from None
    if not fold_tasks:
        return exp_dir, tasks, []
    threads = spec.threads or opts.cpus_per_task or 0
    if opts.launcher == "local" and not threads:  # the tasks run at once here: share the cores
        threads = max(1, (os.cpu_count() or 1) // len(fold_tasks))
    ex = _executor(folder, opts, name)
    specs = [replace(spec, fold=t.fold, threads=threads) for t in fold_tasks]
    jobs = ex.map_array(FoldTask(), specs)
    record_submissions(exp_dir, fold_tasks, jobs, opts.launcher)
    say(f"submitted {len(jobs)} fold task(s) ({', '.join(t.key for t in fold_tasks)}) via {opts.launcher}: "
        f"job(s) {', '.join(str(j.job_id) for j in jobs)}; logs in {folder}")
    if not opts.wait:
        return exp_dir, tasks, jobs
    wait_for(jobs, fold_tasks, folder, progress)
    return exp_dir, tasks, jobs


def wait_for(jobs: list, tasks: List[Task], folder: Path, progress: bool = True, poll_s: float = 2.0) -> None:
    """Wait for the fold jobs with a progress bar over the tasks; RuntimeError names the failed ones."""
    from submitit.helpers import as_completed

    by_id = {j.job_id: t for j, t in zip(jobs, tasks)}
    failed = []
    bar = progress_bar(total=len(jobs), desc="tasks", unit="fold", disable=not progress)
    for job in as_completed(jobs, poll_frequency=poll_s):
        if job.exception() is not None:
            failed.append(f"{by_id[job.job_id].key} (job {job.job_id}, log {job.paths.stderr})")
        bar.update(1)
    bar.close()
    if failed:
        raise RuntimeError("task(s) failed: " + "; ".join(failed) + "; re-run the same command to resume")


# -- ser-cl status ---------------------------------------------------------------------------------
def variant_status(variant: Path) -> Dict[str, List[str]]:
    """A variant dir's folds (from run.json) as complete / started (last.pt, not complete) / missing."""
    info = json.loads((variant / "run.json").read_text())
    out: Dict[str, List[str]] = {"complete": [], "started": [], "missing": []}
    for name in info.get("folds", []):
        fold = variant / name
        key = "complete" if fold_is_complete(fold) else "started" if (fold / "last.pt").is_file() else "missing"
        out[key].append(name)
    return out


def status_lines(runs_dir: Path) -> List[str]:
    """One line per variant under ``runs_dir`` (the runs dir, an experiment's dir or a variant's):
    ``<experiment>/<variant>  complete C/N  started S  missing M`` and the fold names not complete."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: no such directory")
    found = sorted({p.parent for pattern in ("run.json", "*/run.json", "*/*/run.json")
                    for p in runs_dir.glob(pattern)})
    if not found:
        raise FileNotFoundError(f"{runs_dir}: no run.json below it (runs/<experiment>/<variant>/run.json)")
    lines = []
    for variant in found:
        st = variant_status(variant)
        n = sum(len(v) for v in st.values())
        todo = ", ".join([f"{f} (started)" for f in st["started"]] + st["missing"])
        lines.append(f"{variant.parent.name}/{variant.name}  complete {len(st['complete'])}/{n}  "
                     f"started {len(st['started'])}  missing {len(st['missing'])}" + (f"  [{todo}]" if todo else ""))
    return lines
