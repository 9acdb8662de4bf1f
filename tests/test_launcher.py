"""``ser-cl run --launcher``: the task list of what is left (``ser_cl.launch.grid_tasks``), the
local launcher end to end (the same folds and metrics as a plain ``ser-cl run``), a resumed
task, and ``ser-cl status``; on the synthetic corpus with a tiny encoder, 1 epoch, 2 folds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import plant_fold_lock
import torch
from typer.testing import CliRunner

from ser_cl.cli import app

pytest.importorskip("submitit")

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"  # pretrain (self-supervised) -> finetune, session5: 5 folds
TINY = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
        "model.freq_kernels=scaled", "model.d_ff=32", "optim.epochs=1", "optim.batch_size=32", "device=cpu"]
STAGES = ("pretrain", "ft_ce_aug")


def overrides(data_dir: Path, runs: Path):
    return [*TINY, f"data.dir={json.dumps(str(data_dir))}", f"runs_dir={json.dumps(str(runs))}"]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def run_args(data_dir: Path, runs: Path, *extra):
    args = ["run", QUICKSTART, "--fold", "1", "--fold", "2", *extra]
    for item in overrides(data_dir, runs):
        args += ["--set", item]
    return args


def metrics(runs: Path, stage: str, fold: str) -> dict:
    return json.loads((runs / "quickstart" / stage / fold / "metrics.json").read_text())


@pytest.fixture(scope="module")
def plain(synth_mel_dir, tmp_path_factory):
    """A plain ``ser-cl run`` of folds 1 and 2 (one torch thread: deterministic on the CPU)."""
    runs = tmp_path_factory.mktemp("plain")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        invoke(*run_args(synth_mel_dir, runs, "--no-report"))
    finally:
        torch.set_num_threads(threads)
    return runs


def test_grid_tasks_lists_what_is_left(synth_mel_dir, plain, tmp_path):
    from ser_cl.launch import Task, grid_tasks
    from ser_cl.pipeline import plan_experiment

    runs = tmp_path / "runs"
    shutil.copytree(plain, runs)
    (runs / "quickstart/ft_ce_aug/fold-02/metrics.json").unlink()  # killed after its last epoch: last.pt stays
    planned = plan_experiment(QUICKSTART, overrides(synth_mel_dir, runs))
    both = lambda k: ("pretrain/fold-%02d" % k, "ft_ce_aug/fold-%02d" % k)  # noqa: E731
    # by hand: fold 1 complete (no task); fold 2 only its fine-tuning; folds 3-5 both stages, in order;
    # a fine-tuning depends on its own fold's pretraining, inside the same task: no cross-task dependency
    assert grid_tasks(planned) == [Task("fold-02", 2, ("ft_ce_aug/fold-02",)),
                                   Task("fold-03", 3, both(3)), Task("fold-04", 4, both(4)),
                                   Task("fold-05", 5, both(5))]
    assert grid_tasks(planned, [1, 2]) == [Task("fold-02", 2, ("ft_ce_aug/fold-02",))]
    assert grid_tasks(planned, [1]) == []
    assert grid_tasks(planned, [1], restart=True) == [Task("fold-01", 1, both(1))]

    status = invoke("status", runs).output.splitlines()
    assert status == ["quickstart/ft_ce_aug  complete 1/5  started 1  missing 3  "
                      "[fold-02 (started), fold-03, fold-04, fold-05]",
                      "quickstart/pretrain  complete 2/5  started 0  missing 3  [fold-03, fold-04, fold-05]"]

    # resubmitted, the killed task resumes from last.pt and ends where the uninterrupted run did
    invoke(*run_args(synth_mel_dir, runs, "--launcher", "local", "--slurm-cpus-per-task", "1", "--no-report"))
    assert metrics(runs, "ft_ce_aug", "fold-02") == metrics(plain, "ft_ce_aug", "fold-02")
    assert grid_tasks(planned, [1, 2]) == []


def test_grid_tasks_names_each_stages_folds_by_its_own_protocol(synth_mel_dir, tmp_path):
    """Two stages of one store, the second on a fold file numbered 3 and 4: fold task 1 runs the
    first stage's fold-01 and the second's fold-03 (it named fold-01 for both)."""
    from ser_cl.data.splits.fold_files import write_folds
    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.launch import Task, grid_tasks
    from ser_cl.pipeline import plan_experiment

    store = FeatureStore(synth_mel_dir)
    csv_path = write_folds(make_folds(store, "speaker_groups", n_folds=2), store.rows, tmp_path / "f.csv", "synth")
    lines = csv_path.read_text().splitlines()
    renumbered = [lines[0]] + [",".join([u, str(int(k) + 2), part]) for u, k, part in (x.split(",") for x in lines[1:])]
    csv_path.write_text("\n".join(renumbered) + "\n")
    exp = tmp_path / "two.toml"
    exp.write_text(f'experiment = "two"\n[data]\nprotocol = "speaker_groups"\nn_folds = 2\n'
                   f'[[stages]]\nname = "a"\nstage = "train"\n'
                   f'[[stages]]\nname = "b"\nstage = "train"\n'
                   f'data = {{ protocol = "file", folds_file = {json.dumps(str(csv_path))} }}\n')
    planned = plan_experiment(exp, overrides(synth_mel_dir, tmp_path / "runs"))
    assert grid_tasks(planned) == [Task("fold-01", 1, ("a/fold-01", "b/fold-03")),
                                   Task("fold-02", 2, ("a/fold-02", "b/fold-04"))]


def test_local_launcher_matches_a_plain_run(synth_mel_dir, plain, tmp_path):
    runs = tmp_path / "runs"
    res = invoke(*run_args(synth_mel_dir, runs, "--launcher", "local", "--slurm-cpus-per-task", "1"))
    assert "submitted 2 fold task(s) (fold-01, fold-02) via local" in res.output
    assert "## quickstart" in res.output  # the report, as `run` prints it
    for stage in STAGES:
        done = sorted(p.parent.name for p in (runs / "quickstart" / stage).glob("fold-*/metrics.json"))
        assert done == ["fold-01", "fold-02"], (stage, done)
        for fold in done:
            got, want = metrics(runs, stage, fold), metrics(plain, stage, fold)
            assert got["status"] == want["status"] == "complete"
            assert got["test"] == want["test"], (stage, fold)  # test UA and all: the same numbers
    logs = list((runs / "quickstart" / ".submitit").glob("*_log.err"))
    assert len(logs) == 2
    # everything complete: a re-run submits nothing
    again = invoke(*run_args(synth_mel_dir, runs, "--launcher", "local", "--no-report"))
    assert "nothing to submit" in again.output


def test_a_pool_for_every_fold_is_one_task_the_folds_wait_for(synth_mel_dir, other_speech, tmp_path):
    from ser_cl.launch import Task, grid_tasks
    from ser_cl.pipeline import plan_experiment

    sets = [f"data.dir={json.dumps(str(synth_mel_dir))}", f"data.pool={json.dumps([str(other_speech)])}",
            "data.pool_weights=[]", f"runs_dir={json.dumps(str(tmp_path))}"]
    planned = plan_experiment(ROOT / "experiments/pool_pretrain.toml", sets)
    pool = "pool:pretrain/pretrain"
    assert grid_tasks(planned, [1, 3]) == [Task(pool, None, ("pretrain/pool",)),
                                           Task("fold-01", 1, ("ft_ce_aug/fold-01",), (pool,)),
                                           Task("fold-03", 3, ("ft_ce_aug/fold-03",), (pool,))]
    # the pool complete: no pool task, nothing to wait for
    (tmp_path / "pool_pretrain/pretrain/pool").mkdir(parents=True)
    (tmp_path / "pool_pretrain/pretrain/pool/metrics.json").write_text('{"status": "complete"}')
    assert grid_tasks(planned, [1]) == [Task("fold-01", 1, ("ft_ce_aug/fold-01",))]


def test_a_fold_queued_or_running_is_not_submitted_again(synth_mel_dir, tmp_path, monkeypatch):
    """A fake scheduler: the first launch submits folds 1-3 (``--no-wait``); while their jobs are
    queued or running, launching again submits none of them, each left out with a line naming its
    job; once fold 3's job has ended (not complete: it failed), only fold 3 is submitted again. A
    fold whose folder a live process holds (a plain ``ser-cl run`` beside it) is not submitted."""
    import socket
    import subprocess

    import ser_cl.launch as launcher
    from ser_cl.launch import LaunchOptions, TaskSpec, job_active, launch
    from ser_cl.pipeline import plan_experiment

    submitted = []

    class Job:
        def __init__(self, job_id):
            self.job_id = job_id

    class Executor:
        def map_array(self, fn, specs):
            jobs = [Job(str(1000 + len(submitted) + i)) for i in range(len(specs))]
            submitted.extend((s.fold, j.job_id) for s, j in zip(specs, jobs))
            return jobs

    monkeypatch.setattr(launcher, "_executor", lambda folder, opts, name: Executor())
    queue = set()  # the scheduler's queued or running jobs
    runs = tmp_path / "runs"
    planned = plan_experiment(QUICKSTART, overrides(synth_mel_dir, runs))
    spec = TaskSpec(str(QUICKSTART), tuple(overrides(synth_mel_dir, runs)), folds=(1, 2, 3, 4))
    opts = LaunchOptions(launcher="slurm", wait=False)

    def again():
        lines = []
        launch(planned, spec, opts, progress=False, say=lines.append, active=lambda r: r["job"] in queue)
        return lines

    other = subprocess.Popen(["sleep", "120"])
    try:
        held = runs / "quickstart" / "pretrain" / "fold-04"
        plant_fold_lock(held, other.pid)
        lines = again()
        assert submitted == [(1, "1000"), (2, "1001"), (3, "1002")]
        assert any(line.startswith(f"fold-04: not submitted, {held} is held by pid {other.pid}") for line in lines)
        queue.update({"1000", "1001", "1002"})
        lines = again()
        assert len(submitted) == 3, submitted  # nothing new: all three still queued or running
        for k, job in ((1, "1000"), (2, "1001"), (3, "1002")):
            assert any(line.startswith(f"fold-0{k}: not submitted, job {job} (slurm, submitted ") for line in lines)
        queue.discard("1002")  # fold 3's job ended without completing the fold
        again()
        assert submitted[3:] == [(3, "1003")]
    finally:
        other.kill()
        other.wait()
    # the local launcher's job id is its task's pid: running while that process runs
    assert job_active({"launcher": "local", "job": str(os.getpid()), "host": socket.gethostname()})
    assert not job_active({"launcher": "local", "job": str(other.pid), "host": socket.gethostname()})
