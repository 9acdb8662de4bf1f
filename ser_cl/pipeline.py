"""Multi-stage experiments and the built-in quickstart: stages -> folds -> probe, in order.

Used by ``ser-cl run`` and ``ser-cl quickstart``. Every step skips work that is already
complete, so re-running the same command resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from ser_cl.eval.run_probe import probe_run
from ser_cl.train import distributed
from ser_cl.train.run import PlannedStage, run_variant, select_stages

ROOT = Path(__file__).resolve().parents[1]


def plan_experiment(experiment: str | Path, overrides: Sequence[str] = (), preset: Optional[str] = None,
                    stages: Optional[Sequence[str]] = None) -> List[PlannedStage]:
    """All stages of the file (or only those named), their sweeps expanded."""
    return select_stages(experiment, ("train", "pretrain", "finetune"), list(overrides), stages, preset)


def run_experiment(planned: List[PlannedStage], folds: Optional[Sequence[int]] = None,
                   device: Optional[str] = None, progress: bool = True, restart: bool = False) -> Optional[Path]:
    """Train every variant of every stage in order, probing those with ``probe = true`` and
    testing those with a classifier head on ``data.test_on`` (cross-corpus, ``cross.json``).

    ``restart`` clears the selected folds of every stage before training them. Returns the
    experiment's run directory (``runs/<experiment>``).
    """
    from ser_cl.eval.cross_corpus import check_cross_config, cross_test_run

    for p in planned:  # a test store that cannot be used fails now, not after hours of training
        for v in p.variants:
            if v.config.data.test_on and v.config.has_head:
                check_cross_config(v.config.data.dir, v.config.data.test_on, v.config.data.class_map)
    exp_dir = None
    for p in planned:
        for v in p.variants:
            out = run_variant(v, folds, device, progress=progress, restart=restart)
            exp_dir = out.parent
            if v.config.probe and distributed.is_main():
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


def quickstart(data_root: Path, runs_dir: Path, per_speaker: int = 6, device: Optional[str] = None,
               progress: bool = True) -> Path:
    """Synthetic corpus -> prepare -> self-supervised NT-Xent -> CE fine-tuning -> probe."""
    from ser_cl.data.prepare import prepare
    from ser_cl.data.synth import synthesize_corpus

    raw, data_dir = data_root / "raw", data_root / "data"
    if not (raw / "Session5").is_dir():
        synthesize_corpus(raw, per_speaker=per_speaker, seed=0)
    if not (data_dir / "prepare.json").is_file():
        prepare(raw, data_dir, progress=progress)
    overrides = [f'data.dir="{data_dir.resolve()}"', f'runs_dir="{runs_dir}"']
    exp_dir = run_experiment(plan_experiment(find_quickstart(), overrides), device=device, progress=progress)
    assert exp_dir is not None
    return exp_dir


def fold_count(planned: List[PlannedStage]) -> int:
    """How many folds the experiment's protocol gives on its data."""
    from ser_cl.data.folds import make_folds
    from ser_cl.data.store import FeatureStore

    cfg = planned[0].variants[0].config
    return len(make_folds(FeatureStore(cfg.data.dir), cfg.data.protocol, holdout_speakers=cfg.data.holdout_speakers))


def run_on_devices(argv: Sequence[str], devices: Sequence[str], n_folds: int,
                   folds: Optional[Sequence[int]] = None) -> None:
    """Scale-out on one machine: one worker process per device, folds dealt out round-robin.

    Each worker is ``ser-cl run <argv> --device D --fold ...`` and runs every stage for its
    folds in order (a fine-tuning stage only needs the same fold's pretraining), so workers
    never wait on each other. Files are written atomically, so the shared run.json is safe.
    """
    import os
    import subprocess
    import sys

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
        env = dict(os.environ)
        if device.startswith("cpu") and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = cpu_threads
        procs.append((device, mine, subprocess.Popen(cmd, env=env)))
    failed = [(d, m) for d, m, p in procs if p.wait() != 0]
    if failed:
        raise RuntimeError("worker(s) failed: " + "; ".join(f"{d} (folds {m})" for d, m in failed)
                           + "; re-run the same command to resume")
