"""Read access to a feature store written by ``ser-cl prepare`` (see ``prepare``).

``features.npy`` is memory-mapped, so opening a store is cheap and ``store[i]`` is a
view of one utterance's frames; nothing is loaded until it is used.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ser_cl.data.frontends.audio import AUDIO_SUFFIXES

_HINT = "run `ser-cl prepare CORPUS_DIR --out {d}`"


def _holds_audio(folder: Path, depth: int = 2) -> bool:
    """Whether audio files lie in ``folder`` or up to ``depth`` folders below it (a raw corpus)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    if any(e.is_file() and e.name.lower().endswith(AUDIO_SUFFIXES) for e in entries):
        return True
    return depth > 0 and any(_holds_audio(Path(e.path), depth - 1) for e in entries
                             if e.is_dir() and e.name != "cache" and not e.name.startswith("."))


class FeatureStore:
    """A prepared DATA_DIR: manifest rows, class labels and memory-mapped features.

    Attributes: ``data_dir``, ``info`` (prepare.json), ``rows`` (manifest rows, str values),
    ``classes``, ``labeled`` (False for an unlabeled store: no classes), ``labels`` (int64 index
    into classes; -1 when unlabeled), ``speakers``, ``sessions``, ``genders``,
    ``utt_ids``, ``lengths`` (int64 frames), ``n_freq`` (values per frame: 257 for the
    spectrogram, n_mels for log-mel), ``feature_params`` (prepare.json's "features": pass it to
    ``features.compute_features`` to recompute the same front-end), ``offsets``, ``features``
    (memmap), ``speaker_band_stats`` (per-speaker band statistics over all of each speaker's
    audio). ``store[i]`` -> float16 [T_i, n_freq] view.
    """

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        d = self.data_dir
        hint = _HINT.format(d=d)
        if not d.is_dir():
            raise FileNotFoundError(f"no data directory {d}; {hint}")
        marker = d / "prepare.json"
        if not marker.is_file() and _holds_audio(d):
            store = Path("data") / (d.name or "corpus")
            raise FileNotFoundError(f"{d} holds audio files: it is a corpus, not a prepared data directory; run "
                                    f"`ser-cl prepare {d} --out {store}` and train with --set data.dir={store}")
        if not marker.is_file():
            if (d / "manifest.csv").exists() or (d / "features.npy").exists():
                raise FileNotFoundError(f"{marker} is missing: {d} is an incomplete (interrupted) prepare; {hint}")
            raise FileNotFoundError(f"{marker} is missing: {d} is not a prepared data directory; {hint}")
        for name in ("manifest.csv", "features.npy", "offsets.npy"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} is missing although prepare.json exists; {hint}")
        try:
            self.info: dict = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError as err:
            raise ValueError(f"{marker} is not valid JSON ({err}); {hint}") from err
        self.classes: list[str] = list(self.info.get("classes") or [])
        # an unlabeled store (prepare --corpus unlabeled) has no classes and labels -1
        self.labeled: bool = bool(self.info.get("labeled", True))
        if self.labeled and not self.classes:
            raise ValueError(f"{marker} lists no classes; {hint}")

        with open(d / "manifest.csv", newline="", encoding="utf-8") as f:
            self.rows: list[dict] = [dict(r) for r in csv.DictReader(f)]
        self.features = np.load(d / "features.npy", mmap_mode="r")
        self.offsets = np.load(d / "offsets.npy")
        n = len(self.rows)
        if self.features.ndim != 2:
            raise ValueError(f"{d / 'features.npy'} has shape {self.features.shape}, expected [frames, n_freq]; {hint}")
        if self.offsets.shape != (n + 1,) or int(self.offsets[-1]) != self.features.shape[0]:
            raise ValueError(
                f"{d / 'offsets.npy'} ({self.offsets.shape[0]} entries, ends at {int(self.offsets[-1]) if self.offsets.size else 'n/a'}) "
                f"does not match manifest.csv ({n} rows) and features.npy ({self.features.shape[0]} frames); {hint}"
            )
        self.offsets = self.offsets.astype(np.int64, copy=False)
        self.lengths = np.diff(self.offsets)
        self.n_freq: int = int(self.features.shape[1])
        self.feature_params: dict = dict(self.info.get("features") or {})
        recorded = self.feature_params.get("n_freq")
        if recorded is not None and int(recorded) != self.n_freq:
            raise ValueError(
                f"{d / 'features.npy'} has {self.n_freq} values per frame but prepare.json's features say "
                f"n_freq={recorded} (files from different prepares?); {hint}"
            )

        index = {c: i for i, c in enumerate(self.classes)} if self.labeled else {"": -1}
        unknown = sorted({r["label"] for r in self.rows} - set(index))
        if unknown:
            raise ValueError(f"{d / 'manifest.csv'} has label(s) {unknown} not in prepare.json classes {self.classes}; {hint}")
        self.labels = np.array([index[r["label"]] for r in self.rows], dtype=np.int64)
        self.utt_ids: list[str] = [r["utt_id"] for r in self.rows]
        self.speakers: list[str] = [r["speaker"] for r in self.rows]
        self.sessions: list[str] = [r.get("session", "") or "" for r in self.rows]
        self.genders: list[str] = [r.get("gender", "") or "" for r in self.rows]

    @property
    def speaker_band_stats(self) -> Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]]:
        """speaker -> (mean [F], std [F]) over all of that speaker's readable audio, dropped
        classes included (``speaker_stats.npz``, written by prepare); None for a store
        prepared before prepare wrote it."""
        if not hasattr(self, "_speaker_band_stats"):
            path = self.data_dir / "speaker_stats.npz"
            stats = None
            if path.is_file():
                with np.load(path) as z:
                    stats = {str(s): (z["mean"][k], z["std"][k]) for k, s in enumerate(z["speakers"])}
            self._speaker_band_stats = stats
        return self._speaker_band_stats

    @property
    def speaker_audio(self) -> Optional[Dict[str, list]]:
        """speaker -> the audio files ``speaker_band_stats`` were taken over (every readable
        recording of the speaker, dropped classes included); None for a store prepared before
        prepare recorded them."""
        path = self.data_dir / "speaker_stats.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            if "audio" not in z.files:
                return None
            out: Dict[str, list] = {}
            for speaker, audio in zip(z["audio_speakers"].tolist(), z["audio"].tolist()):
                out.setdefault(str(speaker), []).append(str(audio))
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self.rows)
        if not -n <= i < n:
            raise IndexError(f"utterance index {i} out of range for a store of {n}")
        i = i % n
        return self.features[self.offsets[i] : self.offsets[i + 1]]

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.data_dir)!r}: {len(self)} utterances, classes {self.classes})"
