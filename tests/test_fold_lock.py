"""No double training: workers end with their parent (a real ``kill -9``), one process per fold
folder (``ser_cl.train.fold_lock``: contention between two processes, a stale lock taken over),
and the folds a live process holds are skipped by a second ``ser-cl run``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import plant_fold_lock

from ser_cl.train.fold_lock import LOCK_FILE, Holder, fold_lock, is_live, process_start, read_holder, try_acquire

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _wait_for(check, timeout: float = 30.0, step: float = 0.05) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return True
        time.sleep(step)
    return False


def _gone(pid: int) -> bool:
    """The pid no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        return state in ("Z", "X")
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


PARENT = textwrap.dedent("""
    import sys
    from ser_cl.train.workers import start_worker
    child = [sys.executable, "-c", '''
    import os, sys, time
    from ser_cl.train.workers import exit_with_parent
    assert exit_with_parent()
    open(sys.argv[1] + ".tmp", "w").write(str(os.getpid()))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(0.05)  # "training"
    ''', sys.argv[1]]
    p = start_worker(child, kernel=sys.argv[2] == "1")
    p.wait()
""")


@pytest.mark.parametrize("kernel", [True, False], ids=["pdeathsig", "watch-thread"])
def test_kill_9_of_the_parent_ends_its_worker(tmp_path, kernel):
    """A parent that starts a worker as ``run_on_devices`` does is killed with SIGKILL: the worker
    ends within seconds (through the kernel's PR_SET_PDEATHSIG, or the portable watch thread)."""
    if kernel and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(pid_file), "1" if kernel else "0"], env=ENV)
    try:
        assert _wait_for(pid_file.is_file), "the worker never started"
        worker = int(pid_file.read_text())
        assert not _gone(worker)
        time.sleep(0.3)
        assert not _gone(worker), "the worker ended while its parent lives"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: _gone(worker), timeout=15), f"worker {worker} still runs after kill -9 of its parent"
    finally:
        parent.kill()
        if pid_file.is_file() and not _gone(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_exit_with_parent_does_nothing_outside_a_worker(monkeypatch):
    from ser_cl.train.workers import PARENT_ENV, exit_with_parent

    monkeypatch.delenv(PARENT_ENV, raising=False)
    assert exit_with_parent() is False


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ser_cl.train.fold_lock import fold_lock
    with fold_lock(Path(sys.argv[1]), say=print) as mine:
        print("mine" if mine else "not mine", flush=True)
        Path(sys.argv[2]).write_text("ok")
        time.sleep(float(sys.argv[3]))
""")


def test_a_fold_held_by_a_live_process_is_skipped_naming_it(tmp_path):
    fold = tmp_path / "fold-01"
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(fold), str(ready), "60"], env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert _wait_for(ready.is_file)
        lock = json.loads((fold / LOCK_FILE).read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname() and lock["since"]
        second = subprocess.run([sys.executable, "-c", HOLD, str(fold), str(tmp_path / "r2"), "0"], env=ENV,
                                capture_output=True, text=True, timeout=60)
        lines = second.stdout.splitlines()
        assert lines[-1] == "not mine"
        assert f"{fold}: skipped, held by pid {holder.pid} on {socket.gethostname()}, since {lock['since']}" in lines
        assert json.loads((fold / LOCK_FILE).read_text())["pid"] == holder.pid  # untouched
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (-9): its lock stays behind, and the next process takes it over
    said = []
    with fold_lock(fold, say=said.append) as mine:
        assert mine
        assert json.loads((fold / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and f"taking over the lock of pid {holder.pid}" in said[0] and "gone" in said[0]
    assert not (fold / LOCK_FILE).exists()  # released


def test_a_reused_pid_is_not_the_owner(tmp_path):
    """A lock naming this very process's pid but another start time was left by a process that
    ended, whose pid the OS gave to this one: taken over."""
    if not process_start(os.getpid()):
        pytest.skip("no process start times here")
    path = tmp_path / "f" / LOCK_FILE
    path.parent.mkdir()
    stale = Holder(os.getpid(), socket.gethostname(), "2000-01-01 00:00:00", proc_start="1", token="x")
    path.write_text(json.dumps(stale.__dict__))
    assert not is_live(stale)
    assert is_live(Holder(os.getpid(), socket.gethostname(), "now", proc_start=process_start(os.getpid())))
    assert is_live(Holder(1, "another-host.invalid", "now"))  # cannot be checked from here: held
    ours = Holder(os.getpid(), socket.gethostname(), "now", process_start(os.getpid()), token="y")
    assert try_acquire(path, ours) is None and read_holder(path) == ours


def test_released_on_an_exception_and_an_empty_folder_removed(tmp_path):
    fold = tmp_path / "fold-02"
    with pytest.raises(RuntimeError):
        with fold_lock(fold, say=print):
            assert (fold / LOCK_FILE).is_file()
            raise RuntimeError("boom")
    assert not fold.exists()


def test_contention_two_processes_one_winner(tmp_path):
    """Four processes start on one free fold at once: exactly one holds it (for 8 s)."""
    fold = tmp_path / "fold-03"
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, str(fold), str(tmp_path / f"r{i}"), "8"], env=ENV,
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120)[0].splitlines()[-1] for p in procs]
    assert sorted(outs) == ["mine"] + ["not mine"] * 3, outs


def test_a_second_run_skips_the_folds_a_live_process_holds(synth_mel_dir, tmp_path):
    """``ser-cl run`` on folds 1-2 while another process holds fold 1's pretraining: fold 1 is
    skipped (its pretraining and the fine-tuning that needs it), each with a line naming the
    holder, and fold 2 is trained."""
    from typer.testing import CliRunner

    from ser_cl.cli import app

    runs = tmp_path / "runs"
    other = subprocess.Popen(["sleep", "120"])
    try:
        held = runs / "quickstart" / "pretrain" / "fold-01"
        plant_fold_lock(held, other.pid)
        tiny = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
                "model.freq_kernels=scaled", "model.d_ff=32", "optim.epochs=1", "optim.batch_size=32", "device=cpu",
                f"data.dir={json.dumps(str(synth_mel_dir))}", f"runs_dir={json.dumps(str(runs))}"]
        args = ["run", str(ROOT / "experiments" / "quickstart.toml"), "--fold", "1", "--fold", "2", "--no-report",
                "--stage", "pretrain", "--stage", "ft_ce_aug"]
        result = CliRunner().invoke(app, args + [a for s in tiny for a in ("--set", s)])
        assert result.exit_code == 0, result.output + repr(result.exception)
        who = f"pid {other.pid} on {socket.gethostname()}, since 2026-01-02 03:04:05"
        assert f"{held}: skipped, held by {who}" in result.output
        assert f"{runs / 'quickstart' / 'ft_ce_aug' / 'fold-01'}: skipped, its pretraining {held} is held by {who}" \
            in result.output
        assert sorted(p.name for p in held.iterdir()) == [LOCK_FILE]  # nothing written beside the holder
        assert not (runs / "quickstart" / "ft_ce_aug" / "fold-01").exists()
        for stage in ("pretrain", "ft_ce_aug"):
            done = json.loads((runs / "quickstart" / stage / "fold-02" / "metrics.json").read_text())
            assert done["status"] == "complete"
            assert not (runs / "quickstart" / stage / "fold-02" / LOCK_FILE).exists()
    finally:
        other.kill()
        other.wait()


def test_kill_9_of_ser_cl_run_devices_leaves_no_worker_training(synth_mel_dir, tmp_path):
    """The real command: ``ser-cl run --devices cpu,cpu`` on 2 folds, its parent killed with SIGKILL
    once both workers train (each holds its fold's lock, which names it): both workers end, and
    release their locks on the way out."""
    runs = tmp_path / "runs"
    sets = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2",
            "model.freq_kernels=scaled", "model.d_ff=32", "optim.epochs=500", "optim.batch_size=32",
            f"data.dir={json.dumps(str(synth_mel_dir))}", f"runs_dir={json.dumps(str(runs))}"]
    cmd = [sys.executable, "-m", "ser_cl.cli", "run", str(ROOT / "experiments" / "quickstart.toml"), "--stage",
           "pretrain", "--fold", "1", "--fold", "2", "--devices", "cpu,cpu", "--no-report"]
    parent = subprocess.Popen(cmd + [a for s in sets for a in ("--set", s)], env=ENV, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    locks = [runs / "quickstart" / "pretrain" / f"fold-0{k}" / LOCK_FILE for k in (1, 2)]
    workers = []
    try:
        assert _wait_for(lambda: all(p.is_file() for p in locks), timeout=120), "the workers never started"
        workers = [read_holder(p).pid for p in locks]
        assert len(set(workers)) == 2 and parent.pid not in workers
        assert _wait_for(lambda: (runs / "quickstart" / "pretrain" / "fold-01" / "metrics.jsonl").is_file(), 120)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_for(lambda: all(_gone(w) for w in workers), timeout=30), \
            f"workers {[w for w in workers if not _gone(w)]} still run after kill -9 of their parent"
        assert not any(p.exists() for p in locks), "a worker left its lock behind"
    finally:
        parent.kill()
        for w in workers:
            if not _gone(w):
                os.kill(w, signal.SIGKILL)
