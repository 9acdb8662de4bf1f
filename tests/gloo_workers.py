"""Run a test module's worker function on gloo processes forked from a fresh interpreter.

``run_workers("test_gather", "_worker", out)`` starts ``python tests/gloo_workers.py``, which
imports the module, picks a free port and forks ``nprocs`` processes calling
``function(rank, port, out)``. Forking pytest itself is cheap but unsafe: after earlier tests
have run torch operations the parent holds thread pools (torch's, the BLAS library's) whose
state a forked child inherits half-made, and a child can abort. Spawning is safe but re-imports
torch in every child (~10 s on a loaded 2-core machine). A fresh interpreter that has only
imported torch forks safely, and its output comes back in the failure message.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(module: str, function: str, out: Path, nprocs: int = 2, timeout: int = 300) -> None:
    path = os.pathsep.join(p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    cmd = [sys.executable, str(Path(__file__)), module, function, str(nprocs), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"{module}.{function} on {nprocs} processes:\n{res.stdout[-2000:]}{res.stderr[-4000:]}"


if __name__ == "__main__":
    import torch.multiprocessing as mp

    name, function, nprocs, out = sys.argv[1:]
    worker = getattr(importlib.import_module(name), function)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(worker, args=(free_port(), out), nprocs=int(nprocs), join=True, start_method=method)
