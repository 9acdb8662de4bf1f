"""``ser-cl run --devices``: a pool pretraining that serves every fold is trained once, not once
per worker process, and the fine-tuning folds are still dealt out to the workers.

Every ``train_fold`` call -- in this process and in the workers (through a ``sitecustomize``
put on their PYTHONPATH) -- appends ``<pid> <fold dir>`` to a log. With ``--restart`` each
worker used to clear the pool's directory and train it again (two workers wrote the same
last.pt/best.pt, and one deleted the directory the other trained in).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY
from ser_cl.cli import app

ROOT = Path(__file__).resolve().parents[1]

SPY = '''
import os
if os.environ.get("SER_CL_TEST_TRAIN_LOG"):
    import ser_cl.train.run as _run
    _train_fold = _run.train_fold

    def _logged(cfg, store, fold, fold_dir, *args, **kwargs):
        with open(os.environ["SER_CL_TEST_TRAIN_LOG"], "a") as f:
            f.write(f"{os.getpid()} {fold_dir}\\n")
        return _train_fold(cfg, store, fold, fold_dir, *args, **kwargs)

    _run.train_fold = _logged
'''


@pytest.fixture
def train_log(tmp_path, monkeypatch):
    """The log every train_fold call writes to, here and in the worker processes."""
    import ser_cl.train.run as run_module

    log = tmp_path / "train_fold.log"
    spy_dir = tmp_path / "spy"
    spy_dir.mkdir()
    (spy_dir / "sitecustomize.py").write_text(SPY)
    monkeypatch.setenv("SER_CL_TEST_TRAIN_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(spy_dir), os.environ.get("PYTHONPATH")])))
    train_fold = run_module.train_fold

    def logged(cfg, store, fold, fold_dir, *args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {fold_dir}\n")
        return train_fold(cfg, store, fold, fold_dir, *args, **kwargs)

    monkeypatch.setattr(run_module, "train_fold", logged)

    def read():
        lines = log.read_text().splitlines() if log.is_file() else []
        return [(int(pid), Path(d)) for pid, d in (line.split(" ", 1) for line in lines)]

    return read


def _run(synth_mel_dir, pool, runs, *extra):
    sets = [f"data.dir={json.dumps(str(synth_mel_dir))}", f"data.pool={json.dumps([str(d) for d in pool])}",
            "data.pool_weights=[]", f"runs_dir={json.dumps(str(runs))}", "optim.epochs=1", "optim.batch_size=16",
            "finetune.freeze_epochs=1", *(f"model.{k}={json.dumps(v)}" for k, v in TINY.items())]
    args = ["run", str(ROOT / "experiments/pool_pretrain.toml"), "--devices", "cpu,cpu", "--fold", "1", "--fold", "2",
            "--restart", "--no-report", *extra]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def test_a_pool_for_every_fold_is_trained_once_under_devices(synth_mel_dir, other_speech, tmp_path, train_log):
    runs = tmp_path / "runs"
    _run(synth_mel_dir, [other_speech], runs)
    calls = train_log()
    pre, ft = runs / "pool_pretrain" / "pretrain", runs / "pool_pretrain" / "ft_ce_aug"
    trained = Counter(str(d.relative_to(runs / "pool_pretrain")) for _, d in calls)
    assert trained["pretrain/pool"] == 1, f"the pool was trained {trained['pretrain/pool']} times: {calls}"
    assert trained == Counter({"pretrain/pool": 1, "ft_ce_aug/fold-01": 1, "ft_ce_aug/fold-02": 1}), calls
    # the fine-tuning folds went to two different worker processes
    ft_pids = {pid for pid, d in calls if d.parent == ft}
    assert len(ft_pids) == 2 and os.getpid() not in ft_pids, calls
    assert json.loads((pre / "pool" / "metrics.json").read_text())["status"] == "complete"
    # each fold records its torch threads: this process's for the pool, the workers' share of the cores
    import torch

    share = int(os.environ.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // 2))
    assert json.loads((pre / "pool" / "metrics.json").read_text())["threads"] == torch.get_num_threads()
    for k in (1, 2):
        record = json.loads((ft / f"fold-{k:02d}" / "metrics.json").read_text())
        assert record["status"] == "complete" and record["threads"] == share


def test_a_per_fold_pool_is_still_dealt_out_to_the_workers(synth_mel_dir, other_speech, tmp_path, train_log):
    """A pool holding the target runs per fold: each worker pretrains its own folds, none runs here."""
    runs = tmp_path / "runs"
    _run(synth_mel_dir, [synth_mel_dir, other_speech], runs, "--stage", "pretrain")
    calls = train_log()
    trained = Counter(str(d.relative_to(runs / "pool_pretrain")) for _, d in calls)
    assert trained == Counter({"pretrain/fold-01": 1, "pretrain/fold-02": 1}), calls
    pids = {pid for pid, _ in calls}
    assert len(pids) == 2 and os.getpid() not in pids, calls
