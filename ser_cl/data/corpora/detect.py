"""Which reader reads a path: ``detect_corpus`` tells the layout from the folder (or a .csv
file), ``read_corpus`` checks the path and options against the named (or detected) layout and
runs its reader."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Optional

from ser_cl.data.corpora.base import CorpusError, CorpusListing, _wav_files
from ser_cl.data.corpora.cremad import _CREMAD_NAME
from ser_cl.data.corpora.emodb import _EMODB_NAME
from ser_cl.data.corpora.emovo import _is_emovo_file
from ser_cl.data.corpora.iemocap import _IEMOCAP_SESSION
from ser_cl.data.corpora.ravdess import _RAVDESS_ACTOR
from ser_cl.data.corpora.registry import CORPORA, CORPUS_NAMES
from ser_cl.data.corpora.tess import _TESS_FOLDER, _TESS_NAME

_NAME_PATTERNS = (
    ("emodb", _EMODB_NAME),
    ("cremad", _CREMAD_NAME),
)


def _expected_layouts() -> str:
    return "; ".join(info.layout for info in CORPORA.values())


def detect_corpus(path: str | os.PathLike) -> str:
    """Name of the corpus layout at ``path`` (see ``ser_cl.data.corpora``); CorpusError (one line) when unknown."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        raise CorpusError(f"{path} is a file but not a .csv manifest; expected a corpus folder or a CSV manifest")
    children = [p for p in path.iterdir() if p.is_dir()]
    if any(_IEMOCAP_SESSION.fullmatch(p.name) for p in children):
        return "iemocap"
    if any(_RAVDESS_ACTOR.fullmatch(p.name) for p in children):
        return "ravdess"
    votes: Counter = Counter()
    n_wavs = 0
    for wav in _wav_files(path):
        n_wavs += 1
        for name, pattern in _NAME_PATTERNS:
            if pattern.match(wav.name):
                votes[name] += 1
        if _TESS_NAME.match(wav.name) and _TESS_FOLDER.match(wav.parent.name):
            votes["tess"] += 1
        if _is_emovo_file(wav):
            votes["emovo"] += 1
        if n_wavs >= 2000:  # enough evidence; keeps detection fast on big folders
            break
    if votes:
        name, count = votes.most_common(1)[0]
        if count * 2 >= n_wavs:
            return name
    found = f"{n_wavs} audio file(s) matching none of them" if n_wavs else "no audio files"
    raise CorpusError(f"cannot tell the corpus layout of {path} ({found}); expected one of: {_expected_layouts()}; or pass --corpus")


def read_corpus(path: str | os.PathLike, corpus: Optional[str] = None, **options) -> CorpusListing:
    """Read the corpus at ``path`` with the named reader, or the detected one when ``corpus`` is None.

    ``options`` go to the reader (``speaker_level`` / ``speakers_csv`` for ``unlabeled``,
    ``pattern`` / ``label_map`` for ``pattern``); a ``pattern`` implies ``corpus="pattern"``."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"no such file or folder: {path}")
    options = {k: v for k, v in options.items() if v is not None}
    if corpus is None and "pattern" in options:
        corpus = "pattern"  # the pattern layout is never detected: --pattern names it
    if corpus is None:
        corpus = detect_corpus(path)
    corpus = corpus.lower().replace("-", "").replace("_", "")
    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r}; choose one of {', '.join(CORPUS_NAMES)}")
    if corpus == "csv" and not path.is_file():
        raise CorpusError(f"csv: expected a .csv manifest file, got the folder {path}")
    if corpus != "csv" and not path.is_dir():
        raise CorpusError(f"{corpus}: expected a folder, got the file {path}")
    foreign = [k for k in options if k not in CORPORA[corpus].options]
    if foreign:
        owner = next((c.name for c in CORPORA.values() if foreign[0] in c.options), None)
        if owner is None:
            raise TypeError(f"read_corpus: unknown option {foreign[0]!r}")
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise CorpusError(f"{corpus}: {flags} only applies to --corpus {owner}")
    return CORPORA[corpus].reader(path, **options)
