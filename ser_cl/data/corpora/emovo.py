"""EMOVO: ``f1/dis-f1-b1.wav`` (emotion dis, speaker f1, sentence b1; speakers f1-f3, m1-m3)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import _AUDIO_EXT, CorpusListing, Utterance, _abs, _finish, _named_files

# dis-f1-b1.wav = emotion dis, speaker f1, sentence b1 (b1-b3, d1-d2, l1-l4, n1-n5)
_EMOVO_NAME = re.compile(r"^([a-z]{3})-([fm]\d+)-([a-z]\d+)" + _AUDIO_EXT + "$", re.IGNORECASE)
_EMOVO_SPEAKER = re.compile(r"^[fm]\d+$", re.IGNORECASE)
EMOVO_EMOTIONS = {
    "dis": "disgust", "gio": "happy", "neu": "neutral", "pau": "fear",
    "rab": "angry", "sor": "surprise", "tri": "sad",
}


def _is_emovo_file(wav: Path) -> bool:
    """Detection: an EMOVO name with one of the 7 emotion codes, in its speaker's folder."""
    m = _EMOVO_NAME.match(wav.name)
    return bool(m) and m.group(1).lower() in EMOVO_EMOTIONS and m.group(2).lower() == wav.parent.name.lower()


def read_emovo(root: str | os.PathLike) -> CorpusListing:
    """Read EMOVO: ``f1/dis-f1-b1.wav`` = emotion dis (disgust), speaker f1, sentence b1. No sessions.

    Labels are the English names (gio -> happy, pau -> fear, rab -> angry, sor -> surprise,
    tri -> sad); an unknown code is kept as the label itself, lower-cased. Gender is the
    speaker's first letter. A file whose name names another speaker than its speaker folder
    (``m2/dis-f1-b1.wav``) is listed as skipped.
    """
    root = Path(root)
    utterances, skipped = [], []
    for wav, m in _named_files(root, _EMOVO_NAME, "EMOVO", "dis-f1-b1.wav", skipped):
        emotion, speaker, _sentence = (g.lower() for g in m.groups())
        folder = wav.parent.name.lower()
        if _EMOVO_SPEAKER.match(folder) and folder != speaker:
            skipped.append({"path": str(wav), "reason": f"speaker {speaker} in the file name but in the folder of speaker {folder}"})
            continue
        label = EMOVO_EMOTIONS.get(emotion, emotion)
        utterances.append(Utterance(wav.stem, _abs(wav), label, speaker, "", speaker[0].upper()))
    return _finish("emovo", root, utterances, skipped)
