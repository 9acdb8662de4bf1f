"""Worker processes that end with their parent, however the parent ends (``kill -9`` included).

``start_worker`` (the parent: ``ser_cl.pipeline.run_on_devices``) starts a child with the
parent's pid in its environment (PARENT_ENV) and, on Linux, asks the kernel to send the child
SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``). ``exit_with_parent`` (the child, first
thing in ``ser_cl.pipeline.run_experiment``) is the portable half: a daemon thread that watches
``os.getppid()`` and ends the process once the parent is gone (its pid changes when the parent
dies: the child is handed to init or a subreaper). Both end the child with SIGTERM, which
``exit_with_parent`` turns into SystemExit, so its ``finally`` blocks run and its fold locks are
released (``ser_cl.train.fold_lock``); a child that does not stop within GRACE_S is ended hard.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Optional, Sequence

PARENT_ENV = "SER_CL_PARENT_PID"
PR_SET_PDEATHSIG = 1
POLL_S = 0.5
GRACE_S = 20.0


def _pdeathsig(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl: too late for the kernel to tell
        os.kill(os.getpid(), signal.SIGTERM)


def start_worker(cmd: Sequence[str], env: Optional[Dict[str, str]] = None, kernel: bool = True) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` for a child that ends with this process: PARENT_ENV in its
    environment (for ``exit_with_parent``) and, with ``kernel`` (Linux), PR_SET_PDEATHSIG."""
    parent = os.getpid()
    env = dict(os.environ if env is None else env, **{PARENT_ENV: str(parent)})
    preexec = (lambda: _pdeathsig(parent)) if kernel and sys.platform.startswith("linux") else None
    return subprocess.Popen(list(cmd), env=env, preexec_fn=preexec)


def _sigterm_to_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _end_hard_later() -> None:
    time.sleep(GRACE_S)
    os._exit(128 + signal.SIGTERM)


def exit_with_parent() -> bool:
    """In a worker started by ``start_worker``: end this process when its parent is gone.

    SIGTERM becomes SystemExit (``finally`` blocks run), and a daemon thread polls the parent's
    pid; once it changed, the process sends itself SIGTERM (and ends hard GRACE_S later if the
    main thread has not stopped by then). False (nothing done) outside such a worker."""
    want = os.environ.get(PARENT_ENV)
    if not want or not want.isdigit():
        return False
    parent = int(want)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        threading.Thread(target=_end_hard_later, daemon=True).start()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
    if os.getppid() != parent:  # already gone
        os.kill(os.getpid(), signal.SIGTERM)
    return True
