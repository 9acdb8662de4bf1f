"""CSV manifest: ``path,label,speaker[,session,gender,utt_id]`` with a header row."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

from ser_cl.data.corpora.base import CorpusError, CorpusListing, Utterance, _abs, _finish, _normalise_gender

CSV_REQUIRED = ("path", "label", "speaker")


def read_csv_manifest(csv_path: str | os.PathLike) -> CorpusListing:
    """Read a manifest with a header row: ``path,label,speaker`` and optionally ``session,gender,utt_id``.

    Relative paths are relative to the CSV's folder. ``utt_id`` defaults to the file name
    without extension, or, when names repeat, the path relative to the folder all files share
    (``/`` -> ``_``). Gender accepts
    F/M/female/male (anything else -> unknown).
    """
    csv_path = Path(csv_path)
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise CorpusError(
                f"csv: {csv_path} lacks column(s) {', '.join(missing)}; the header row must name path,label,speaker[,session,gender]"
            )
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    skipped: list[dict] = []
    entries = []
    for line_no, row in enumerate(rows, start=2):
        if not row.get("path"):
            skipped.append({"path": f"{csv_path}:{line_no}", "reason": "empty path"})
            continue
        wav = Path(row["path"])
        wav = wav if wav.is_absolute() else base / wav
        if not row.get("label"):
            skipped.append({"path": str(wav), "reason": f"empty label (line {line_no})"})
            continue
        if not row.get("speaker"):
            skipped.append({"path": str(wav), "reason": f"empty speaker (line {line_no})"})
            continue
        if not wav.is_file():
            skipped.append({"path": str(wav), "reason": f"missing audio file (line {line_no})"})
            continue
        entries.append((row, wav))
    stems = Counter(wav.stem for _, wav in entries)
    common = os.path.commonpath([str(wav.resolve().parent) for _, wav in entries]) if entries else str(base)
    utterances = []
    for row, wav in entries:
        utt_id = row.get("utt_id") or ""
        if not utt_id:
            if stems[wav.stem] == 1:
                utt_id = wav.stem
            else:
                rel = os.path.relpath(wav.resolve(), common)
                utt_id = os.path.splitext(rel)[0].replace(os.sep, "_").replace("/", "_")
        utterances.append(
            Utterance(utt_id, _abs(wav), row["label"], row["speaker"], row.get("session", ""), _normalise_gender(row.get("gender", "")))
        )
    return _finish("csv", csv_path, utterances, skipped)
