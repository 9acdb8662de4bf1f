"""RAVDESS: ``Actor_NN/03-01-EE-II-SS-RR-AA.wav`` (audio-only speech files only)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import _AUDIO_EXT, CorpusListing, Utterance, _abs, _finish, _named_files

_RAVDESS_ACTOR = re.compile(r"Actor_(\d+)")
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)" + _AUDIO_EXT + "$")
RAVDESS_EMOTIONS = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}


def read_ravdess(root: str | os.PathLike) -> CorpusListing:
    """Read RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.wav``; keeps modality 03 (audio) + vocal channel 01 (speech).

    Speaker ``Actor_AA``; odd actors are male, even female. No sessions.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav, m in _named_files(root, _RAVDESS_NAME, "RAVDESS", "03-01-05-01-02-01-12.wav", skipped):
        modality, channel, emotion, _intensity, _statement, _rep, actor = m.groups()
        if modality != "03":
            skipped.append({"path": str(wav), "reason": f"modality {modality} is not audio-only (03)"})
            continue
        if channel != "01":
            skipped.append({"path": str(wav), "reason": f"vocal channel {channel} is not speech (01)"})
            continue
        label = RAVDESS_EMOTIONS.get(emotion, f"emotion{emotion}")
        gender = "M" if int(actor) % 2 == 1 else "F"
        utterances.append(Utterance(wav.stem, _abs(wav), label, f"Actor_{actor}", "", gender))
    return _finish("ravdess", root, utterances, skipped)
