"""``ser-cl prepare``: corpus folder -> feature store (manifest.csv, features.npy, offsets.npy, prepare.json).

Steps: read the corpus (``corpora``), map labels to classes (``parse_classes``), compute the
features of every kept utterance in parallel (``--jobs`` processes) with the chosen front-end
(``features.feature_params``: the thesis' log-spectrogram by default, or log-mel), then
assemble the store. Robustness rules:

- A bad audio file (empty, truncated, not audio, shorter than ``min_duration``) is skipped and
  listed with its reason in prepare.json; the run goes on.
- Per-utterance features are cached in ``DATA_DIR/cache/`` under a key made of the absolute
  path, size and mtime of the file and the feature parameters (so two front-ends never share
  an entry), each entry written atomically.
  A second run into the same DATA_DIR computes only what changed (often nothing) and
  re-assembles. Delete ``DATA_DIR/cache/`` to reclaim the space; nothing else reads it.
- Every output file is written under a temporary name and renamed; an old prepare.json is
  removed first and the new one is written LAST, so a DATA_DIR is complete iff prepare.json
  exists (``FeatureStore`` refuses one without it).

Selection (``select_utterances``, in ``ser_cl.data.corpora.selection``): ``--subset improvised|scripted``
(IEMOCAP) and ``--include-speakers`` / ``--exclude-speakers`` (any corpus) leave utterances out
before anything is computed: they are not in the store, not in the speaker statistics, and not
in ``skipped`` (prepare.json's ``selection`` records the options and how many were left out).
What the command prints about a run: ``ser_cl.data.stores.summary``.

The per-file feature cache and the workers that fill it: ``ser_cl.data.stores.feature_cache``.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np

from ser_cl import __version__
from ser_cl.data.splits.coverage import pattern_lines, thin_class_warnings
from ser_cl.data.corpora import CORPORA, CorpusError, Utterance, parse_classes, parse_label_map, read_corpus
from ser_cl.data.stores.feature_cache import cache_key, params_key, run_ssl_tasks, run_tasks, scan_cache, store_dtype
from ser_cl.data.frontends.features import FEATURE_PARAMS, SAMPLE_RATE, canonical_params, feature_kind, feature_params, frames_for
from ser_cl.data.corpora.selection import select_utterances
from ser_cl.io import atomic_path, save_npy, write_json, write_text

MANIFEST_COLUMNS = ("utt_id", "path", "speaker", "session", "gender", "label", "n_frames", "duration_s", "corpus_label")
DEFAULT_MIN_DURATION = 0.25
CACHE_DIR = "cache"
SPEAKER_STATS_FILE = "speaker_stats.npz"


@dataclass
class PrepareResult:
    """Summary of a ``prepare`` run (``info`` is the content of prepare.json)."""

    data_dir: Path
    corpus: str
    n_utterances: int
    n_skipped: int
    n_computed: int  # feature files computed in this run
    n_cached: int  # feature files reused from DATA_DIR/cache
    total_frames: int
    audio_seconds: float
    wall_seconds: float
    info: dict
    # of the n_utterances stored: features computed in this run / read from the cache (a file that
    # failed or was too short counts in n_computed or n_cached, never here)
    stored_computed: int = 0
    stored_cached: int = 0

    @property
    def real_time_factor(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)


#: the ssl front-end refuses a store larger than this by default (``--max-store-gb``)
DEFAULT_MAX_STORE_GB = 20.0


def _audio_seconds(path: str) -> float:
    """A file's duration from its header (no decoding); unreadable: its size as 16-bit 16 kHz mono."""
    try:
        import soundfile

        info = soundfile.info(path)
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 -- an estimate; the file's real problem is reported when it is read
        return os.path.getsize(path) / (2 * SAMPLE_RATE) if os.path.exists(path) else 0.0


def _check_ssl_store_size(params: dict, paths: Sequence[str], max_store_gb: float,
                          notify: Optional[Callable[[str], None]]) -> None:
    """Estimate features.npy for an ssl front-end (frames/s x values per frame x 2 bytes x
    seconds), say it, and refuse it above ``max_store_gb``."""
    up = params["upstream"]
    seconds = sum(_audio_seconds(p) for p in paths)
    size_gb = seconds * float(up["frame_rate"]) * int(params["n_freq"]) * 2 / 1e9
    line = (f"ssl store: about {size_gb:.3g} GB in features.npy ({seconds / 3600:.3g} h x {up['frame_rate']:g} frames/s "
            f"x {params['n_stored_layers']} layer(s) x {params['hidden_size']} values x 2 bytes), as much again in cache/")
    if size_gb > max_store_gb:
        raise ValueError(f"{line}: more than --max-store-gb {max_store_gb:g}; choose one --layer, or raise "
                         f"--max-store-gb to {np.ceil(size_gb):g} or more")
    if notify is not None:
        notify(line)


class _CachedFeatures:
    """Cache files read as a store's utterances (``band_stats`` reads ``store[i]``)."""

    def __init__(self, files: Sequence[str]):
        self.files = list(files)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.load(self.files[i])


def write_speaker_stats(path: Path, readable: Sequence[tuple[str, str, str]]) -> dict:
    """Each speaker's per-band mean and std over all frames of every readable utterance of
    theirs (``(speaker, cache file, audio path)``), whatever its label: ``speaker_stats.npz`` with
    ``speakers`` [S], ``mean`` and ``std`` [S, F] float32, ``utterances`` [S], and the audio files
    they were taken over (``audio`` [N] and their ``audio_speakers`` [N], so that statistics of
    other features of the same audio, the classical baseline's, are taken over the same files).
    Utterances without a speaker are left out (speaker normalisation gives each of them its own
    statistics). Returns the prepare.json entry."""
    from ser_cl.data.stores.normalize import band_stats

    by_speaker: dict[str, list[str]] = {}
    audio: list[tuple[str, str]] = []
    for speaker, cache_file, audio_path in readable:
        if speaker:
            by_speaker.setdefault(speaker, []).append(cache_file)
            audio.append((speaker, audio_path))
    speakers = sorted(by_speaker)
    stats = [band_stats(_CachedFeatures(by_speaker[s]), range(len(by_speaker[s]))) for s in speakers]
    n_freq = stats[0][0].shape[0] if stats else 0
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, speakers=np.array(speakers, dtype=str),
                     mean=np.array([m for m, _ in stats], dtype=np.float32).reshape(len(speakers), n_freq),
                     std=np.array([d for _, d in stats], dtype=np.float32).reshape(len(speakers), n_freq),
                     utterances=np.array([len(by_speaker[s]) for s in speakers], dtype=np.int64),
                     audio=np.array([p for _, p in audio], dtype=str),
                     audio_speakers=np.array([s for s, _ in audio], dtype=str))
    return {"file": path.name, "speakers": len(speakers),
            "utterances": sum(len(v) for v in by_speaker.values())}


def _manifest_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def prepare(
    corpus_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    corpus: Optional[str] = None,
    classes: Optional[str] = None,
    jobs: Optional[int] = None,
    min_duration: float = DEFAULT_MIN_DURATION,
    progress: bool = True,
    features: Union[str, dict, None] = None,
    speaker_level: Optional[int] = None,
    speakers_csv: Optional[str | os.PathLike] = None,
    pattern: Optional[str] = None,
    label_map: Optional[str] = None,
    subset: Optional[str] = None,
    include_speakers: Union[str, Sequence[str], None] = None,
    exclude_speakers: Union[str, Sequence[str], None] = None,
    max_store_gb: float = DEFAULT_MAX_STORE_GB,
    notify: Optional[Callable[[str], None]] = None,
    speed: float = 1.0,
) -> PrepareResult:
    """Prepare the corpus at ``corpus_dir`` into the feature store ``out_dir``; see the module doc.

    ``corpus``: a name from ``CORPORA`` (None: detect). ``classes``: a ``parse_classes`` spec
    (None: the corpus default). ``jobs``: worker processes (None: ``os.cpu_count()``).
    ``features``: the front-end, a ``feature_params`` dict or a kind name ("spectrogram",
    "mel" with default settings); None: the thesis' spectrogram. ``speaker_level`` /
    ``speakers_csv``: where an unlabeled corpus' speakers come from (``read_unlabeled``); such
    a store has an empty label column and no classes (prepare.json ``"labeled": false``).
    ``pattern`` / ``label_map``: read any layout (``corpora.pattern``; implies ``corpus="pattern"``).
    ``subset``, ``include_speakers``, ``exclude_speakers``: ``select_utterances``. Raises ``CorpusError``
    (one-line message) for an unreadable corpus or a class spec that selects nothing, and
    ``ValueError`` for invalid feature parameters. The ssl front-end (``ser_cl.data.frontends.upstream``):
    the store's estimated size goes to ``notify`` (a line), and a store above ``max_store_gb``
    (decimal GB) is refused (``ValueError``) before anything is computed or removed. Also to
    ``notify``: with ``pattern``, a few parsed examples and a warning when the speaker count looks
    wrong (``coverage.pattern_lines``); a class recorded by fewer than 2 speakers
    (``coverage.thin_class_warnings``).
    ``speed``: compute the features of every file played this many times as fast
    (``audio.change_speed``; e.g. 0.9 or 1.1): a store of perturbed copies with the corpus' utterance
    ids and speakers, which a training stage adds to its folds' training utterances
    (``data.train_copies``, ``ser_cl.data.batches.copies``); prepare.json records it.
    """
    from ser_cl.data.splits.folds import auto_protocol, fold_summary, make_folds

    started = time.perf_counter()
    if not (isinstance(speed, (int, float)) and 0.5 <= float(speed) <= 2.0):
        raise ValueError(f"--speed {speed!r}: give a factor from 0.5 to 2 (e.g. 0.9 or 1.1)")
    speed = float(speed)
    if features is None:
        params = dict(FEATURE_PARAMS)
    elif isinstance(features, str):
        params = feature_params(features)
    else:
        params = canonical_params(features)
    n_freq = int(params["n_freq"])
    dtype = store_dtype(params)
    cache_text = params_key(params)
    if feature_kind(params) == "functionals":  # a new openSMILE may compute other values
        from ser_cl.data.frontends.opensmile_features import opensmile_version

        cache_text += f"|opensmile {opensmile_version()}"
    if speed != 1:
        cache_text += f"|speed {speed!r}"
    out_dir = Path(out_dir)
    listing = read_corpus(corpus_dir, corpus, speaker_level=speaker_level, speakers_csv=speakers_csv,
                          pattern=pattern, label_map=label_map)
    if listing.corpus == "pattern" and notify is not None:  # what the pattern parsed, before the features
        for line in pattern_lines(listing.utterances, corpus_dir):
            notify(line)
    utterances, selection = select_utterances(listing, subset, include_speakers, exclude_speakers)
    labeled = listing.corpus != "unlabeled"
    if not labeled and classes:
        raise CorpusError("unlabeled: --classes does not apply to a corpus without labels")
    spec = classes or CORPORA[listing.corpus].default_classes
    class_map = parse_classes(spec, available=[u.label for u in utterances]) if labeled else None

    kept: list[tuple[Utterance, str]] = []
    dropped = Counter()
    dropped_utts: list[Utterance] = []  # not in the store, but part of their speakers' statistics
    for utt in utterances:
        name = class_map.class_of(utt.label) if class_map is not None else ""
        if name is None:
            dropped[utt.label] += 1
            dropped_utts.append(utt)
        else:
            kept.append((utt, name))
    found_labels = sorted(set(u.label for u in utterances))
    for name in class_map.classes if class_map is not None else ():
        if not any(c == name for _, c in kept):
            raise CorpusError(
                f"class {name!r} (labels {'+'.join(class_map.sources(name))}) matches no utterance; "
                f"labels in this corpus: {', '.join(found_labels) or 'none'}"
            )

    if feature_kind(params) == "ssl":
        _check_ssl_store_size(params, [utt.path for utt, _ in kept], max_store_gb, notify)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker = out_dir / "prepare.json"
    if marker.exists():
        marker.unlink()  # the directory is incomplete from here until the new marker is written
    cache_dir = out_dir / CACHE_DIR
    cache_dir.mkdir(exist_ok=True)
    cached = scan_cache(cache_dir)

    skipped = list(listing.skipped)
    # every utterance's features are computed: the kept ones' [0, len(kept)), then the dropped ones'
    every = [utt for utt, _ in kept] + dropped_utts
    entries: list[Optional[tuple[str, int]]] = [None] * len(every)  # (cache file, n_samples)
    reasons: dict[int, str] = {}
    tasks = []
    n_cached = 0
    for i, utt in enumerate(every):
        try:
            key = cache_key(utt.path, os.stat(utt.path), cache_text)
        except OSError as err:
            reasons[i] = f"cannot read file: {err.strerror or err}"
            continue
        hit = cached.get(key)
        if hit is None:
            tasks.append((i, utt.path, str(cache_dir / key), params, speed))
        elif hit[0] == "ok":
            entries[i] = (str(cache_dir / f"{key}_{hit[1]}.npy"), int(hit[1]))
            n_cached += 1
        else:
            reasons[i] = (cache_dir / hit[1]).read_text(encoding="utf-8").strip()
            n_cached += 1

    jobs = max(1, int(jobs or os.cpu_count() or 1))
    stem_of = {task[0]: task[2] for task in tasks}
    compute = run_ssl_tasks if feature_kind(params) == "ssl" else run_tasks
    for index, n_samples, reason in compute(tasks, jobs, progress):
        if reason is not None:
            reasons[index] = reason
        else:
            entries[index] = (f"{stem_of[index]}_{n_samples}.npy", int(n_samples))

    # decide what is kept (too-short is decided here, so changing --min-duration needs no recompute)
    min_samples = max(int(np.ceil(min_duration * SAMPLE_RATE)), 400)
    rows, files = [], []
    stored_computed = 0
    for i, (utt, name) in enumerate(kept):
        if i in reasons:
            skipped.append({"path": utt.path, "reason": reasons[i]})
            continue
        cache_file, n_samples = entries[i]
        if n_samples < min_samples:
            skipped.append(
                {"path": utt.path, "reason": f"too short: {n_samples / SAMPLE_RATE:.3f} s (< {max(min_duration, 400 / SAMPLE_RATE):g} s)"}
            )
            continue
        n_frames = frames_for(params, n_samples)
        stored_computed += i in stem_of  # what the summary counts: stored rows, computed now or cached
        rows.append(
            {
                "utt_id": utt.utt_id, "path": utt.path, "speaker": utt.speaker, "session": utt.session,
                "gender": utt.gender, "label": name, "n_frames": n_frames,
                "duration_s": f"{n_samples / SAMPLE_RATE:.4f}", "corpus_label": utt.label,
            }
        )
        files.append(cache_file)
    if not rows:
        raise CorpusError(f"no usable utterance in {corpus_dir} ({len(skipped)} skipped; first reason: "
                          f"{skipped[0]['reason'] if skipped else 'none'})")
    counts_per_class = Counter(r["label"] for r in rows)
    class_names = list(class_map.classes) if class_map is not None else []
    empty = [c for c in class_names if not counts_per_class.get(c)]
    if empty:
        raise CorpusError(f"class {empty[0]!r} has no usable utterance left after skipping {len(skipped)} "
                          f"bad file(s) (first reason: {skipped[0]['reason'] if skipped else 'none'})")

    lengths = np.array([r["n_frames"] for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    with atomic_path(out_dir / "features.npy", suffix=".npy") as tmp:
        store = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(offsets[-1]), n_freq))
        for i, cache_file in enumerate(files):
            feats = np.load(cache_file)
            if feats.shape != (lengths[i], n_freq) or feats.dtype != dtype:
                os.unlink(cache_file)
                raise RuntimeError(f"corrupt cache entry {cache_file} (removed); run prepare again")
            store[offsets[i] : offsets[i + 1]] = feats
        store.flush()
        del store
    save_npy(out_dir / "offsets.npy", offsets)
    write_text(out_dir / "manifest.csv", _manifest_text(rows))
    readable = [(utt.speaker, entries[i][0], utt.path) for i, utt in enumerate(every) if entries[i] is not None]
    stats_info = write_speaker_stats(out_dir / SPEAKER_STATS_FILE, readable)

    counts_per_speaker = Counter(r["speaker"] for r in rows)
    if labeled:
        protocol = auto_protocol(rows)
        try:
            folds_info = {"protocol": protocol, "folds": fold_summary(make_folds(rows, protocol))}
        except ValueError as err:
            folds_info = {"protocol": protocol, "folds": [], "error": str(err)}
    else:
        folds_info = {"protocol": None, "folds": [],
                      "error": "an unlabeled store has no folds: it serves self-supervised pretraining (data.pool)"}
    audio_seconds = float(sum(float(r["duration_s"]) for r in rows))
    wall = time.perf_counter() - started
    info = {
        "ser_cl_version": __version__,
        "corpus": listing.corpus,
        "source": str(Path(corpus_dir).resolve()),
        **({"pattern": pattern, "label_map": parse_label_map(label_map)} if listing.corpus == "pattern" else {}),
        "selection": selection,
        "labeled": labeled,
        "classes": class_names,
        "class_spec": class_map.spec if class_map is not None else None,
        "class_map": dict(class_map.mapping) if class_map is not None else {},
        "features": params,
        **({"speed": speed} if speed != 1 else {}),
        "min_duration_s": min_duration,
        "n_utterances": len(rows),
        "total_frames": int(offsets[-1]),
        "audio_seconds": round(audio_seconds, 3),
        "counts_per_class": {c: counts_per_class.get(c, 0) for c in class_names},
        "counts_per_speaker": dict(sorted(counts_per_speaker.items())),
        "dropped_labels": dict(sorted(dropped.items())),
        "speaker_stats": stats_info,
        "skipped": skipped,
        "folds": folds_info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(wall, 3),
    }
    write_json(marker, info)  # LAST: the completion marker
    if labeled and notify is not None:  # a class with fewer than 2 speakers
        for line in thin_class_warnings([r["label"] for r in rows], [r["speaker"] for r in rows], class_names):
            notify(line)
    return PrepareResult(
        data_dir=out_dir, corpus=listing.corpus, n_utterances=len(rows), n_skipped=len(skipped),
        n_computed=len(tasks), n_cached=n_cached, total_frames=int(offsets[-1]),
        stored_computed=stored_computed, stored_cached=len(rows) - stored_computed,
        audio_seconds=audio_seconds, wall_seconds=wall, info=info,
    )
