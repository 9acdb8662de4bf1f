"""What every corpus reader shares: the ``Utterance`` / ``CorpusListing`` it returns, the
``CorpusError`` it raises, the ``CorpusInfo`` of the registry, and the small helpers (audio files
under a folder, absolute paths, label-file text, gender spellings, the final sort and id check)."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ser_cl.data.frontends.audio import AUDIO_SUFFIXES


class CorpusError(ValueError):
    """A corpus that cannot be read as asked; ``str(err)`` is a one-line explanation."""


@dataclass(frozen=True)
class Utterance:
    """One labelled recording. ``label`` is the corpus' own label, before class mapping."""

    utt_id: str
    path: str  # absolute
    label: str
    speaker: str
    session: str = ""
    gender: str = ""  # "F", "M" or "" (unknown)


@dataclass
class CorpusListing:
    """What a reader found: utterances sorted by ``utt_id``, and {"path", "reason"} for files left out."""

    corpus: str
    root: Path
    utterances: list[Utterance]
    skipped: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class CorpusInfo:
    name: str
    reader: Callable[[Path], CorpusListing]
    default_classes: str  # a --classes spec
    layout: str  # one-line description for help and error messages
    options: tuple[str, ...] = ()  # reader keyword options (prepare options) only this corpus takes


# --------------------------------------------------------------------------------------------
# helpers

# the audio file name suffixes the name patterns accept (those in AUDIO_SUFFIXES)
_AUDIO_EXT = r"\.(?:" + "|".join(re.escape(s[1:]) for s in AUDIO_SUFFIXES) + ")"


def _wav_files(root: Path) -> Iterator[Path]:
    """Every audio file (``AUDIO_SUFFIXES``: .wav, .flac, .ogg, .aiff ..., case-insensitive) under ``root``,
    skipping hidden and AppleDouble ``._`` files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(AUDIO_SUFFIXES) and not name.startswith("."):
                yield Path(dirpath) / name


def _named_files(root: Path, name: re.Pattern, corpus: str, example: str,
                 skipped: list[dict]) -> Iterator[tuple[Path, re.Match]]:
    """``(file, match)`` for every audio file under ``root`` whose name matches ``name``; each other
    file goes to ``skipped`` as not following the ``corpus`` naming (``example`` shows it)."""
    for wav in _wav_files(root):
        m = name.match(wav.name)
        if m is None:
            skipped.append({"path": str(wav), "reason": f"file name does not follow the {corpus} pattern (e.g. {example})"})
            continue
        yield wav, m


def _abs(path: Path) -> str:
    return str(path.resolve())


def _read_text(path: Path) -> str:
    """Text of a label file: UTF-8 when it decodes, else latin-1 (IEMOCAP has a few latin-1 bytes)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _normalise_gender(value: str) -> str:
    v = value.strip().lower()
    if v in ("f", "female", "w", "woman"):
        return "F"
    if v in ("m", "male", "man"):
        return "M"
    return ""


def _finish(corpus: str, root: Path, utterances: list[Utterance], skipped: list[dict]) -> CorpusListing:
    """Sort, check that utterance ids are unique, and package a listing."""
    utterances = sorted(utterances, key=lambda u: u.utt_id)
    counts = Counter(u.utt_id for u in utterances)
    dupes = [k for k, n in counts.items() if n > 1]
    if dupes:
        raise CorpusError(f"{corpus}: utterance id {dupes[0]!r} occurs {counts[dupes[0]]} times in {root}")
    return CorpusListing(corpus, root, utterances, sorted(skipped, key=lambda s: s["path"]))
