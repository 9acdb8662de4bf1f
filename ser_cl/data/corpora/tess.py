"""TESS: ``OAF_angry/OAF_back_angry.wav`` (speakers OAF, YAF)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import _AUDIO_EXT, CorpusListing, Utterance, _abs, _finish, _named_files

_TESS_NAME = re.compile(r"^(OAF|YAF)_(.+)_([A-Za-z]+)" + _AUDIO_EXT + "$", re.IGNORECASE)
_TESS_FOLDER = re.compile(r"^(OAF|YAF)_", re.IGNORECASE)
TESS_GENDERS = {"OAF": "F", "YAF": "F"}


def read_tess(root: str | os.PathLike) -> CorpusListing:
    """Read TESS: ``OAF_angry/OAF_back_angry.wav`` = speaker OAF, word "back", label angry.

    The label is the last part of the file name, lower-cased (angry, disgust, fear, happy,
    neutral, ps = pleasant surprise, sad); both speakers are female. No sessions.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav, m in _named_files(root, _TESS_NAME, "TESS", "OAF_back_angry.wav", skipped):
        speaker = m.group(1).upper()
        utterances.append(Utterance(wav.stem, _abs(wav), m.group(3).lower(), speaker, "", TESS_GENDERS.get(speaker, "")))
    return _finish("tess", root, utterances, skipped)
