"""Unlabeled audio (self-supervised pretraining pools): any folder tree of audio files, no labels."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

from ser_cl.data.frontends.audio import AUDIO_SUFFIXES
from ser_cl.data.corpora.base import CorpusError, CorpusListing, Utterance, _abs, _finish, _wav_files


def read_unlabeled(root: str | os.PathLike, speaker_level: Optional[int] = None,
                   speakers_csv: Optional[str | os.PathLike] = None) -> CorpusListing:
    """Every audio file (.wav, .flac, .ogg, .aiff ...) under ``root``, without labels (label ""), for
    self-supervised pretraining.

    The speaker is optional: ``speaker_level`` = N takes the N-th folder below ``root`` (0 = the
    first), or ``speakers_csv`` (header ``path,speaker``; paths relative to ``root`` or absolute)
    names it per file; otherwise it is "" (unknown). Known speakers let a pool hold out whole
    speakers for validation. The utterance id is the path below ``root`` without its suffix.
    """
    root = Path(root)
    if speaker_level is not None and speakers_csv is not None:
        raise CorpusError("unlabeled: give --speaker-level or --speakers-csv, not both")
    by_path: dict[str, str] = {}
    if speakers_csv is not None:
        csv_path = Path(speakers_csv)
        if not csv_path.is_file():
            raise CorpusError(f"unlabeled: no such speakers CSV {csv_path}")
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"path", "speaker"} <= set(reader.fieldnames or ()):
                raise CorpusError(f"unlabeled: {csv_path} needs a header row naming path,speaker")
            for row in reader:
                p = Path(row["path"])
                by_path[_abs(p if p.is_absolute() else root / p)] = (row["speaker"] or "").strip()
    utterances, skipped = [], []
    for wav in _wav_files(root):
        rel = wav.relative_to(root)
        speaker = ""
        if speaker_level is not None:
            if speaker_level < 0 or speaker_level >= len(rel.parts) - 1:
                skipped.append({"path": str(wav), "reason": f"no folder at --speaker-level {speaker_level}"})
                continue
            speaker = rel.parts[speaker_level]
        elif by_path:
            speaker = by_path.get(_abs(wav), "")
        utterances.append(Utterance(rel.with_suffix("").as_posix(), _abs(wav), "", speaker, "", ""))
    if not utterances:
        raise CorpusError(f"unlabeled: no usable audio file ({', '.join(AUDIO_SUFFIXES)}) under {root}")
    return _finish("unlabeled", root, utterances, skipped)
