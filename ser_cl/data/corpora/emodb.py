"""EmoDB: ``03a01Fa.wav`` (speaker 03, text a01, emotion F, version a), any folder depth."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import _AUDIO_EXT, CorpusListing, Utterance, _abs, _finish, _named_files

_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])" + _AUDIO_EXT + "$")
EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
EMODB_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def read_emodb(root: str | os.PathLike) -> CorpusListing:
    """Read EmoDB: ``03a01Fa.wav`` = speaker 03, text a01, emotion F (happy), version a. No sessions."""
    root = Path(root)
    utterances, skipped = [], []
    for wav, m in _named_files(root, _EMODB_NAME, "EmoDB", "03a01Fa.wav", skipped):
        speaker, _text, emotion, _version = m.groups()
        utterances.append(
            Utterance(wav.stem, _abs(wav), EMODB_EMOTIONS[emotion], speaker, "", EMODB_GENDERS.get(speaker, ""))
        )
    return _finish("emodb", root, utterances, skipped)
