"""Folds from files and to files: EmoBox's layout and a plain CSV (protocol ``file``).

EmoBox (Ma et al., 2024, github.com/emo-box/EmoBox) ships its cross-validation splits as
``DIR/fold_K/<name>_train_fold_K.jsonl`` and ``<name>_test_fold_K.jsonl``, optionally with
``<name>_valid_fold_K.jsonl`` (its loader uses that file as the validation set when it exists;
an empty one, as ``export-folds`` writes for ``data.val_speakers = 0``, is an empty validation
set: nothing is carved),
one JSON object per line, e.g.::

    {"key": "iemocap-Ses01F_impro04_F000", "dataset": "iemocap", "wav": "downloads/iemocap/Session1/
     sentences/wav/Ses01F_impro04/Ses01F_impro04_F000.wav", "type": "raw", "sample_rate": 16000,
     "num_frame": 70312.0, "task": "category", "length": 4.3945, "emo": "neu", "channel": 1}

Its repository also has a ``.json`` twin of each file: one object mapping each key to such a
record (without "key"); that form is read too (a ``.jsonl`` file wins when both exist).

The CSV form is ``utt_id,fold,part`` rows, part one of train | val | test, fold a number
(``fold-03`` is read as 3).

Matching to the store: the basename of "wav" against the basename of the manifest's ``path``
(the corpus lies elsewhere on another machine; when several manifest files share the basename,
the one sharing the most trailing folders), else "key" against ``utt_id`` (also with EmoBox's
``<dataset>-`` prefix taken off). For the CSV, ``utt_id`` first, then the basename. Anything
that matches nothing is an error; store utterances that no fold mentions are returned as a note.

This module only maps files to row indices; ``ser_cl.data.splits.folds`` builds the ``Fold`` objects
and carves validation speakers where a file gives no validation set.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

PARTS = ("train", "val", "test")
# EmoBox's file names for the parts
EMOBOX_PARTS = {"train": "train", "val": "valid", "test": "test"}
SHOWN = 3  # names quoted in a one-line error or note


@dataclass
class FileFold:
    """One fold as a file gives it: row indices per part; ``val`` is None when the file has none."""

    name: str
    train: np.ndarray
    val: Optional[np.ndarray]
    test: np.ndarray


def _basename(path: str) -> str:
    """The file name of a path written on any machine (Windows separators too)."""
    return PurePosixPath(str(path).replace("\\", "/")).name


def _tail(path: str) -> List[str]:
    """The folders and file name of a path, separators of any machine."""
    return [p for p in str(path).replace("\\", "/").split("/") if p]


def _matcher(rows: Sequence[dict]) -> Callable[[str, str, str], Optional[int]]:
    """A function (key, wav, dataset) -> row index or None (see the module doc)."""
    by_id = {r.get("utt_id", ""): i for i, r in enumerate(rows)}
    by_base: Dict[str, List[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.get("path"):
            by_base[_basename(r["path"])].append(i)

    def shared_tail(a: List[str], b: List[str]) -> int:
        """How many trailing path components two paths share."""
        n = 0
        while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
            n += 1
        return n

    def match(key: str, wav: str, dataset: str) -> Optional[int]:
        if wav:
            candidates = by_base.get(_basename(wav), [])
            if len(candidates) == 1:
                return candidates[0]
            if candidates:  # the same file name in several folders (e.g. SAVEE's DC/a01.wav, JE/a01.wav)
                tail = _tail(wav)
                scores = [shared_tail(tail, _tail(rows[i]["path"])) for i in candidates]
                if scores.count(max(scores)) == 1:
                    return candidates[scores.index(max(scores))]
        if key in by_id:
            return by_id[key]
        if dataset and key.startswith(dataset + "-") and key[len(dataset) + 1:] in by_id:
            return by_id[key[len(dataset) + 1:]]  # EmoBox keys are "<dataset>-<file stem>"
        return None

    return match


def _records(path: Path) -> List[Tuple[str, str, str]]:
    """(key, wav, dataset) of each utterance of one EmoBox file (.jsonl or .json)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
        items = list(data.items()) if isinstance(data, dict) else [(None, rec) for rec in data]
    else:
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((None, json.loads(line)))
                except ValueError as err:
                    raise ValueError(f"{path}:{n} is not a JSON object ({err})") from err
    out = []
    for key, rec in items:
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: expected one JSON object per utterance, got {str(rec)[:60]!r}")
        out.append((str(rec.get("key", key) or ""), str(rec.get("wav", "") or ""), str(rec.get("dataset", "") or "")))
    return out


def _fold_number(text: str, where: str) -> int:
    """The fold number of a CSV's fold cell: 3 or fold-03 -> 3."""
    found = re.search(r"(\d+)$", text.strip())
    if not found:
        raise ValueError(f"{where}: fold {text!r} is not a fold number (e.g. 3 or fold-03)")
    return int(found.group(1))


def _emobox_parts(folder: Path) -> Dict[int, Dict[str, Path]]:
    """fold number -> {part: file} of an EmoBox folder (.jsonl preferred over .json)."""
    folds: Dict[int, Dict[str, Path]] = {}
    for sub in sorted(folder.glob("fold_*")):
        if not sub.is_dir() or not re.fullmatch(r"fold_\d+", sub.name):
            continue
        k = int(sub.name.split("_")[1])
        parts = {}
        for part, word in EMOBOX_PARTS.items():
            # older EmoBox files say fold1 for fold_1
            found = [f for ext in ("jsonl", "json") for f in sorted(sub.glob(f"*_{word}_fold_{k}.{ext}"))] or \
                    [f for ext in ("jsonl", "json") for f in sorted(sub.glob(f"*_{word}_fold{k}.{ext}"))]
            if len({f.suffix for f in found}) < len(found):
                raise ValueError(f"{sub}: more than one *_{word}_fold_{k} file: "
                                 + ", ".join(f.name for f in found))
            if found:
                parts[part] = found[0]
        if "train" not in parts or "test" not in parts:
            raise ValueError(f"{sub} needs <name>_train_fold_{k}.jsonl and <name>_test_fold_{k}.jsonl")
        folds[k] = parts
    if not folds:
        raise ValueError(f"{folder} holds no fold_K/<name>_train_fold_K.jsonl files (EmoBox layout)")
    return folds


def read_folds_file(path: str | Path, rows: Sequence[dict]) -> Tuple[List[FileFold], List[str]]:
    """The folds of ``path`` (an EmoBox folder or a ``.csv``) over ``rows``, and notes (lines) on
    store utterances that no fold mentions. Raises a one-line ValueError for what does not match."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data.folds_file {path} does not exist")
    match = _matcher(rows)
    # fold number -> part -> row indices; utterances of the file that match no row
    parts: Dict[int, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    unknown: List[str] = []
    if path.is_dir():
        for k, files in _emobox_parts(path).items():
            for part, file in files.items():
                parts[k][part]  # the file exists: its part is given, even when empty (val_speakers = 0)
                for key, wav, dataset in _records(file):
                    i = match(key, wav, dataset)
                    if i is None:
                        unknown.append(_basename(wav) or key)
                    else:
                        parts[k][part].add(i)
    elif path.suffix.lower() != ".csv":
        raise ValueError(f"{path} is neither a folder in EmoBox's layout (fold_K/<name>_train_fold_K.jsonl) "
                         "nor a .csv of utt_id,fold,part rows")
    else:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            if not {"utt_id", "fold", "part"} <= set(reader.fieldnames or []):
                raise ValueError(f"{path} needs the columns utt_id,fold,part, found {reader.fieldnames}")
            for n, r in enumerate(reader, 2):
                if r["part"] not in PARTS:
                    raise ValueError(f"{path}:{n}: part must be train, val or test, got {r['part']!r}")
                i = match(r["utt_id"], "", "")  # utt_id first, then as a file name
                i = match("", r["utt_id"], "") if i is None else i
                if i is None:
                    unknown.append(r["utt_id"])
                else:
                    parts[_fold_number(r["fold"], f"{path}:{n}")][r["part"]].add(i)
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} utterances match no utterance of the store (by file name or "
                         f"utt_id), e.g. {', '.join(unknown[:SHOWN])}; prepare the same corpus (and classes)")
    folds = []
    for k in sorted(parts):
        given = parts[k]
        has_val = "val" in given  # a valid file or val rows: the validation set, even an empty one
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = given[a] & given[b]
            if both:
                names = ", ".join(rows[i].get("utt_id", str(i)) for i in sorted(both)[:SHOWN])
                raise ValueError(f"{path}: fold {k} puts {len(both)} utterances in both {a} and {b}, e.g. {names}")
        val = _indices(given["val"]) if has_val else None  # none given: carved from training speakers
        folds.append(FileFold(f"fold-{k:02d}", _indices(given["train"]), val, _indices(given["test"])))
    mentioned = set().union(*(p for fold in parts.values() for p in fold.values()))
    notes = []
    left = [i for i in range(len(rows)) if i not in mentioned]
    if left:
        names = ", ".join(rows[i].get("utt_id", str(i)) for i in left[:SHOWN])
        notes.append(f"{len(left)} of the store's {len(rows)} utterances are in no fold of {path} "
                     f"(e.g. {names}); they are left out of train, val and test")
    return folds, notes


def _indices(rows: set) -> np.ndarray:
    """Row indices, sorted, as the int64 array a Fold holds."""
    return np.array(sorted(rows), dtype=np.int64)


def _record(row: dict, dataset: str) -> Dict[str, Any]:
    """One utterance in EmoBox's JSONL form (its loader reads "wav", "type", "length", "channel")."""
    return {
        "key": row.get("utt_id", ""), "dataset": dataset, "wav": row.get("path", ""), "type": "raw",
        "task": "category", "length": float(row.get("duration_s") or 0.0), "emo": row.get("label", ""),
        "channel": 1,  # features are computed from the mono mix-down
        "speaker": row.get("speaker", ""),  # not EmoBox's: lets other toolkits check speaker independence
    }


def write_folds(folds: Sequence[Any], rows: Sequence[dict], out: str | Path, dataset: str) -> Path:
    """Write ``folds`` (Fold objects) as ``out``: a ``.csv`` of utt_id,fold,part rows, or else an
    EmoBox folder (fold_K/<dataset>_{train,valid,test}_fold_K.jsonl; K counts from 1). An existing
    folder that already holds fold_* folders is refused, so that no stale fold is left in it."""
    out = Path(out)
    if out.suffix.lower() == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["utt_id", "fold", "part"])
            for k, fold in enumerate(folds, 1):
                for part in PARTS:
                    writer.writerows([rows[i]["utt_id"], k, part] for i in getattr(fold, part))
        return out
    if out.is_dir() and any(out.glob("fold_*")):
        raise ValueError(f"{out} already holds fold_* folders; export to a new folder")
    for k, fold in enumerate(folds, 1):
        sub = out / f"fold_{k}"
        sub.mkdir(parents=True, exist_ok=True)
        for part, word in EMOBOX_PARTS.items():
            lines = [json.dumps(_record(rows[i], dataset), ensure_ascii=False) + "\n" for i in getattr(fold, part)]
            (sub / f"{dataset}_{word}_fold_{k}.jsonl").write_text("".join(lines), encoding="utf-8")
    return out
