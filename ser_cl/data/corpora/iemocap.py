"""IEMOCAP: ``SessionN/sentences/wav/<dialog>/<utt>.wav`` + ``SessionN/dialog/EmoEvaluation/<dialog>.txt``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ser_cl.data.corpora.base import CorpusError, CorpusListing, Utterance, _abs, _finish, _read_text

_IEMOCAP_SESSION = re.compile(r"Session(\d+)")
# [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
_IEMOCAP_LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[[^\]]*\]")


def parse_iemocap_labels(text: str) -> list[tuple[str, str]]:
    """(utterance name, label) for each label line of an EmoEvaluation file.

    Only lines of the form ``[start - end] <utt> <label> [v, a, d]`` count; annotator lines
    (``C-E2:``, ``A-E3:`` ...), the ``%`` header and blank lines are ignored.
    """
    out = []
    for line in text.splitlines():
        m = _IEMOCAP_LABEL_LINE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def iemocap_speaker(utt_name: str, session: str) -> tuple[str, str]:
    """(speaker, gender) of an IEMOCAP utterance: session + the letter of its last name part.

    ``Ses01F_impro01_M013`` -> ("Ses01M", "M"): the ``F`` in the dialog name only says who
    wore the motion-capture markers. Raises CorpusError when the last part has no F/M letter.
    """
    last = utt_name.rsplit("_", 1)[-1]
    letter = last[:1].upper()
    if letter not in ("F", "M"):
        raise CorpusError(f"cannot tell the speaker of {utt_name!r} (its last part should start with F or M)")
    return f"{session}{letter}", letter


def read_iemocap(root: str | os.PathLike) -> CorpusListing:
    """Read an IEMOCAP release folder (the one holding Session1 .. Session5)."""
    root = Path(root)
    sessions = sorted(
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := _IEMOCAP_SESSION.fullmatch(p.name))
    )
    if not sessions:
        raise CorpusError(f"iemocap: no Session1..Session5 folders in {root}")
    utterances: list[Utterance] = []
    skipped: list[dict] = []
    seen: set[str] = set()
    for number, session_dir in sessions:
        session = f"Ses{number:02d}"
        label_dir = session_dir / "dialog" / "EmoEvaluation"
        wav_root = session_dir / "sentences" / "wav"
        if not label_dir.is_dir():
            skipped.append({"path": str(label_dir), "reason": "missing label folder dialog/EmoEvaluation"})
            continue
        # only the .txt files directly in EmoEvaluation/; its sub-folders hold other formats
        for label_file in sorted(label_dir.glob("*.txt")):
            if label_file.name.startswith(".") or not label_file.is_file():
                continue
            dialog = label_file.stem
            for utt_name, label in parse_iemocap_labels(_read_text(label_file)):
                if utt_name in seen:
                    continue
                wav = wav_root / dialog / f"{utt_name}.wav"
                if not wav.is_file():
                    alt = wav_root / utt_name.rsplit("_", 1)[0] / f"{utt_name}.wav"
                    if not alt.is_file():
                        skipped.append({"path": str(wav), "reason": f"missing audio file (labelled in {label_file.name})"})
                        continue
                    wav = alt
                try:
                    speaker, gender = iemocap_speaker(utt_name, session)
                except CorpusError as err:
                    skipped.append({"path": str(wav), "reason": str(err)})
                    continue
                seen.add(utt_name)
                utterances.append(Utterance(utt_name, _abs(wav), label, speaker, session, gender))
    return _finish("iemocap", root, utterances, skipped)
