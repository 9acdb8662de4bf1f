"""One writer per fold folder: a lock file naming its owner (pid, host, start time).

``ser-cl run / train / pretrain / finetune`` (every stage kind, the baseline's too) take the lock
of a fold folder before they check, clear or train it (``ser_cl.train.run``). A second process
that finds the fold held by a live process skips that fold with one line naming the holder; a
lock whose owner is gone (same host, and its pid no longer runs, or now runs another process: its
start time differs) is taken over, saying so. The lock is released when the fold is done, and on
errors too. A lock written on another host cannot be checked from here and counts as held:
``fold_lock`` says which file to delete if that host's process is known to be gone.

The lock is created atomically: its text is written to a private file first, then hard-linked to
its name, which fails if the name exists (``os.link``; ``O_CREAT | O_EXCL`` where links are not
supported), so a reader never sees a half-written lock and two processes never both take it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

LOCK_FILE = "lock.json"
GUARD_STALE_S = 60.0  # a takeover guard older than this was left by a process that died mid-takeover


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: ``pid`` on ``host``, the process's start time as the OS records it
    (``proc_start``; "" where it cannot be read), since ``since`` (ISO time), ``token``: unique
    per acquisition (a release removes only its own lock), ``job``: a scheduler's job id, if any."""

    pid: int
    host: str
    since: str
    proc_start: str = ""
    token: str = ""
    job: str = ""

    def describe(self) -> str:
        job = f", job {self.job}" if self.job else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.since}"


def process_start(pid: int) -> str:
    """The start time of process ``pid`` as the OS records it ("" if unknown): on Linux the
    clock-tick count in /proc/PID/stat (field 22), which tells a reused pid from the original."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = text.rsplit(")", 1)[-1].split()  # the name (field 2) may hold spaces and ")"
    return fields[19] if len(fields) > 19 else ""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def is_live(holder: Holder) -> bool:
    """Whether the lock's owner still runs: on this host, its pid runs and (where the OS tells)
    started when the lock says; a lock from another host cannot be checked and counts as live."""
    if holder.host != socket.gethostname():
        return True
    if not pid_alive(holder.pid):
        return False
    now = process_start(holder.pid)
    return not (holder.proc_start and now and now != holder.proc_start)


def live_holder(path: Path) -> Optional[Holder]:
    """The holder of the lock at ``path`` if that process still runs (``is_live``), else None."""
    holder = read_holder(path)
    return holder if holder is not None and is_live(holder) else None


def me(job: str = "") -> Holder:
    pid = os.getpid()
    return Holder(pid=pid, host=socket.gethostname(), since=time.strftime("%Y-%m-%d %H:%M:%S"),
                  proc_start=process_start(pid), token=uuid.uuid4().hex, job=job)


def read_holder(path: Path) -> Optional[Holder]:
    """The lock at ``path``; None if there is none. An unreadable one reads as held by pid 0
    (so it is taken over: only a crash mid-write could leave one, and writes are atomic)."""
    try:
        data = json.loads(Path(path).read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data.get("since", "")),
                      str(data.get("proc_start", "")), str(data.get("token", "")), str(data.get("job", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(0, socket.gethostname(), "?")


def _create(path: Path, holder: Holder) -> bool:
    """Create ``path`` holding ``holder`` if it does not exist; False if it does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(holder.__dict__, indent=1)
    tmp = path.with_name(f".{path.name}.{holder.token or uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here: exclusive create (the text follows at once)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def try_acquire(path: Path, holder: Holder, say: Callable[[str], None] = lambda line: None) -> Optional[Holder]:
    """Take the lock at ``path`` for ``holder``: None if taken, else the live holder.

    A lock whose owner is gone (``is_live``) is replaced, with a line to ``say``. Two processes
    taking over the same stale lock are serialised by a guard file beside it."""
    path = Path(path)
    for _ in range(20):
        if _create(path, holder):
            return None
        current = read_holder(path)
        if current is None:  # released in between: try again
            continue
        if is_live(current):
            return current
        guard = path.with_name(path.name + ".takeover")
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > GUARD_STALE_S:
                    guard.unlink(missing_ok=True)
            except OSError:
                pass
            time.sleep(0.05)
            continue
        try:
            if read_holder(path) == current:  # nobody took it over in between
                path.unlink(missing_ok=True)
                if _create(path, holder):
                    say(f"{path.parent}: taking over the lock of {current.describe()} (that process is gone)")
                    return None
        finally:
            guard.unlink(missing_ok=True)
    current = read_holder(path)
    return current if current is not None else holder


def release(path: Path, holder: Holder) -> None:
    """Remove the lock at ``path`` if it is still ``holder``'s."""
    current = read_holder(Path(path))
    if current is not None and current.token == holder.token:
        Path(path).unlink(missing_ok=True)


@contextmanager
def fold_lock(fold_dir: Path, say: Callable[[str], None] = print, enabled: bool = True) -> Iterator[bool]:
    """Hold ``fold_dir``'s lock for the body: yields True when this process holds it, False when a
    live process does (after one line to ``say`` naming it: the caller skips the fold). Released
    on leaving the body, however it is left; a fold folder that holds nothing else is removed
    with it. ``enabled`` False (a torchrun rank other than 0): yields True, takes nothing."""
    if not enabled:
        yield True
        return
    fold_dir = Path(fold_dir)
    existed = fold_dir.is_dir()
    path = fold_dir / LOCK_FILE
    holder = me()
    other = try_acquire(path, holder, say)
    if other is not None:
        extra = "" if other.host == holder.host else f" (if that process is gone, delete {path})"
        say(f"{fold_dir}: skipped, held by {other.describe()}{extra}")
        yield False
        return
    try:
        yield True
    finally:
        release(path, holder)
        if not existed:
            try:
                fold_dir.rmdir()  # only if empty: nothing was written
            except OSError:
                pass


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def claim_fold(fold_dir: Path, device=None) -> Iterator[bool]:
    """The fold's lock for a training or baseline run: True if this run trains the fold, False if
    a live process holds it (one line on stderr names it; skip the fold). Under torchrun rank 0
    takes it and every rank gets its answer."""
    from ser_cl.train import distributed

    with fold_lock(fold_dir, say=_stderr, enabled=distributed.is_main()) as mine:
        if distributed.rank_and_world()[1] > 1:
            import torch

            mine = distributed.max_int(torch.tensor(0 if mine else 1, device=device)) == 0
        yield mine
