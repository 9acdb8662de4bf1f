"""The per-file feature cache of a store (``DATA_DIR/cache/``) and the workers that fill it.

Each audio file's features are one cache entry, ``<key>_<n_samples>.npy``, named by
``cache_key`` (the file's absolute path, size and modification time, and the front-end's
parameters, so two front-ends never share one), or ``<key>.err`` holding the reason a file
cannot be used when that is the file's fault. Every entry is written atomically. ``run_tasks``
computes entries in ``--jobs`` processes (forked on Linux); ``run_ssl_tasks`` runs one upstream
model in this process over groups of files. ``ser_cl.data.stores.prepare`` assembles a store from the
entries.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ser_cl.data.frontends.audio import AudioError, AudioReadError, change_speed, load_audio, read_audio
from ser_cl.data.frontends.features import FEATURE_PARAMS, SAMPLE_RATE, compute_features
from ser_cl.io import save_npy, write_text

#: one file's work: (index, audio path, cache entry stem, front-end parameters, speed)
Task = tuple[int, str, str, dict, float]


def params_key(params: dict) -> str:
    """The feature parameters as canonical text (part of every cache key)."""
    return json.dumps(params, sort_keys=True)


def cache_key(path: str, stat: os.stat_result, params_key: str = params_key(FEATURE_PARAMS)) -> str:
    """A file's cache name: its path, size and modification time, and what is computed from it."""
    text = f"{params_key}|{path}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:32]


def read_entry(task: Task) -> tuple[Optional[np.ndarray], Optional[str]]:
    """One task's waveform (at its speed), or (None, the reason it cannot be read; cached when it
    is the file's fault)."""
    _, path, cache_stem, _, speed = task
    try:
        return change_speed(load_audio(path, SAMPLE_RATE), speed), None
    except AudioReadError as err:  # not cached: permissions or I/O may be fixed without touching the file
        return None, str(err)
    except AudioError as err:
        reason = str(err)
        write_text(cache_stem + ".err", reason)
        return None, reason
    except Exception as err:  # noqa: BLE001 -- report, do not cache: may be transient (permissions, I/O)
        return None, f"{type(err).__name__}: {err}"


def compute_entry(task: Task) -> tuple[int, Optional[int], Optional[str]]:
    """Worker: features of one file -> cache. Returns (index, n_samples or None, error reason or None)."""
    index, _, cache_stem, params, _ = task
    wave, reason = read_entry(task)
    if wave is None:
        return index, None, reason
    return cache_entry(index, cache_stem, wave.size, compute_features(wave, params), store_dtype(params))


def store_dtype(params: dict) -> np.dtype:
    """The dtype a front-end's frames are stored in: float16, or what its parameters say
    (float32 for openSMILE functionals, whose values exceed float16's range)."""
    return np.dtype(params.get("dtype", "float16"))


def cache_entry(index: int, cache_stem: str, n_samples: int, feats: np.ndarray,
                 dtype: np.dtype = np.dtype(np.float16)) -> tuple[int, Optional[int], Optional[str]]:
    """Store one file's features (float16 unless ``dtype``) in the cache; a ``compute_entry`` result."""
    with np.errstate(over="ignore"):  # checked on the next line
        feats = feats.astype(dtype)
    if not np.isfinite(feats).all():  # float16 overflow is impossible for sane audio; refuse rather than store inf
        reason = "features not finite (samples far outside [-1, 1]?)"
        write_text(cache_stem + ".err", reason)
        return index, None, reason
    save_npy(f"{cache_stem}_{n_samples}.npy", feats)
    return index, int(n_samples), None


#: Reasons only the WAV-only reader (before FLAC, OGG, AIFF, mu-law ... support) gave: a cached
#: one is stale (the file may read now), so the file is read again.
_STALE_REASONS = ("not a WAV file (no RIFF/WAVE header)", "unsupported WAV variant ", "unsupported WAV encoding")


def stale_reason(path: Path) -> bool:
    try:
        reason = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return reason.startswith(_STALE_REASONS) and not reason.endswith("(libsndfile cannot decode it either)")


def scan_cache(cache_dir: Path) -> dict[str, tuple[str, str]]:
    """key -> ("ok", n_samples) or ("err", reason-file) for every finished cache entry."""
    found: dict[str, tuple[str, str]] = {}
    for name in os.listdir(cache_dir):
        if name.startswith("."):
            continue  # temporary files of an interrupted write
        if name.endswith(".npy") and "_" in name:
            key, _, n = name[:-4].rpartition("_")
            if n.isdigit():
                found[key] = ("ok", n)
        elif name.endswith(".err") and not stale_reason(cache_dir / name):
            found.setdefault(name[:-4], ("err", name))
    return found


def _mp_context():
    methods = multiprocessing.get_all_start_methods()
    # fork is cheap (no re-import); macOS and Windows lack a safe fork
    if "fork" in methods and sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _preload_resampler(task: Task) -> None:
    """Import scipy.signal once in the parent (before forking) when the corpus needs resampling
    (another sample rate, or a speed other than 1).

    Importing it takes ~1 s; done here, forked workers share it instead of each paying for it
    (as they share ``soundfile``, imported here when the sample is not a WAV).
    """
    try:
        _, rate = read_audio(task[1])
    except AudioError:
        return
    if rate != SAMPLE_RATE or task[4] != 1:
        import scipy.signal  # noqa: F401


def run_tasks(tasks: list[Task], jobs: int, progress: bool) -> list[tuple[int, Optional[int], Optional[str]]]:
    """Compute the tasks (in ``jobs`` processes when > 1) with a progress bar on a terminal's stderr."""
    from ser_cl.progress import progress_bar

    results = []
    if not tasks:
        return results
    if jobs > 1:
        _preload_resampler(tasks[0])
    if jobs <= 1 or len(tasks) < 4:
        with progress_bar(total=len(tasks), desc="features", unit="utt", disable=not progress, leave=False) as bar:
            for task in tasks:
                results.append(compute_entry(task))
                bar.update(1)
        return results
    chunksize = max(1, min(32, len(tasks) // (jobs * 8)))
    # the pool is forked before the progress bar starts its monitor thread
    with _mp_context().Pool(processes=min(jobs, len(tasks))) as pool:
        with progress_bar(total=len(tasks), desc="features", unit="utt", disable=not progress, leave=False) as bar:
            for result in pool.imap_unordered(compute_entry, tasks, chunksize=chunksize):
                results.append(result)
                bar.update(1)
    return results


#: the ssl front-end decodes files in groups of about this much audio (memory: the waveforms and
#: their features), then runs the upstream over each group's chunks in batches
SSL_GROUP_SECONDS = 600.0
SSL_GROUP_FILES = 256


def run_ssl_tasks(tasks: list[Task], jobs: int, progress: bool) -> list[tuple[int, Optional[int], Optional[str]]]:
    """The ssl front-end's ``run_tasks``: one upstream model in this process (GPU when there is
    one), files decoded in groups of similar size so that batches pad little, each file's features
    cached like the other front-ends'. On the CPU torch uses at most ``jobs`` threads. The bar
    shows the real-time factor (compute seconds per audio second)."""
    import torch

    from ser_cl.data.frontends.upstream import get_upstream
    from ser_cl.progress import progress_bar

    results: list[tuple[int, Optional[int], Optional[str]]] = []
    if not tasks:
        return results
    upstream = get_upstream(tasks[0][3])
    threads = torch.get_num_threads()
    if upstream.device.type == "cpu":
        torch.set_num_threads(max(1, min(jobs, threads)))
    order = sorted(tasks, key=lambda t: os.path.getsize(t[1]) if os.path.exists(t[1]) else 0)
    started, audio_s = time.perf_counter(), 0.0
    try:
        with progress_bar(total=len(tasks), desc="ssl features", unit="utt", disable=not progress, leave=False) as bar:
            group: list[tuple[tuple, np.ndarray]] = []
            group_samples = 0
            for k, task in enumerate(order):
                wave, reason = read_entry(task)
                if wave is None:
                    results.append((task[0], None, reason))
                    bar.update(1)
                else:
                    group.append((task, wave))
                    group_samples += wave.size
                full = group_samples >= SSL_GROUP_SECONDS * SAMPLE_RATE or len(group) >= SSL_GROUP_FILES
                if group and (full or k == len(order) - 1):
                    feats = upstream.extract([w for _, w in group])
                    for (task_g, wave_g), f in zip(group, feats):
                        results.append(cache_entry(task_g[0], task_g[2], wave_g.size, f))
                    audio_s += group_samples / SAMPLE_RATE
                    bar.update(len(group))
                    bar.set_postfix_str(f"RTF {(time.perf_counter() - started) / max(audio_s, 1e-9):.3f}")
                    group, group_samples = [], 0
    finally:
        torch.set_num_threads(threads)
    return results
