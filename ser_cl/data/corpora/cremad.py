"""CREMA-D: ``1001_DFA_ANG_XX.wav`` (+ optional ``VideoDemographics.csv`` for gender)."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import _AUDIO_EXT, CorpusListing, Utterance, _abs, _finish, _normalise_gender, _named_files

_CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})" + _AUDIO_EXT + "$")
CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}


def _cremad_genders(root: Path) -> dict[str, str]:
    """ActorID -> F/M from a VideoDemographics.csv in ``root`` or its parent (absent -> {})."""
    for folder in (root, root.parent):
        demo = folder / "VideoDemographics.csv"
        if demo.is_file():
            with open(demo, newline="", encoding="utf-8-sig", errors="replace") as f:
                return {
                    (row.get("ActorID") or "").strip(): _normalise_gender(row.get("Sex") or "")
                    for row in csv.DictReader(f)
                }
    return {}


def read_cremad(root: str | os.PathLike) -> CorpusListing:
    """Read CREMA-D: ``1001_DFA_ANG_XX.wav`` = speaker 1001, sentence DFA, emotion ANG, intensity XX."""
    root = Path(root)
    genders = _cremad_genders(root)
    utterances, skipped = [], []
    for wav, m in _named_files(root, _CREMAD_NAME, "CREMA-D", "1001_DFA_ANG_XX.wav", skipped):
        speaker, _sentence, emotion, _intensity = m.groups()
        label = CREMAD_EMOTIONS.get(emotion, emotion.lower())
        utterances.append(Utterance(wav.stem, _abs(wav), label, speaker, "", genders.get(speaker, "")))
    return _finish("cremad", root, utterances, skipped)
