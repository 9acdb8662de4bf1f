"""Which speakers record each class, and the warnings when too few do.

A class recorded by fewer than 2 speakers cannot be learned and tested in the same fold of a
speaker-independent protocol: the fold that tests its one speaker trains without it (the model
never predicts it there, and its recall is 0), and no other fold tests it. ``thin_class_warnings``
says so at ``ser-cl prepare`` and ``ser-cl folds``; ``fold_gap_warnings`` says, at training, which
folds' training speakers lack a class their test speakers have.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np


def speakers_per_class(labels: Sequence[str], speakers: Sequence[str]) -> Dict[str, List[str]]:
    """class name -> the sorted speakers with at least one utterance of it (an utterance without a
    speaker counts as a speaker of its own, "?")."""
    out: Dict[str, set] = {}
    for label, speaker in zip(labels, speakers):
        out.setdefault(str(label), set()).add(str(speaker) or "?")
    return {c: sorted(s) for c, s in out.items()}


def thin_class_warnings(labels: Sequence[str], speakers: Sequence[str], classes: Sequence[str]) -> List[str]:
    """One warning line per class of ``classes`` recorded by fewer than 2 speakers."""
    per_class = speakers_per_class(labels, speakers)
    lines = []
    for name in classes:
        who = per_class.get(name, [])
        if len(who) >= 2:
            continue
        by = f"only 1 speaker ({who[0]})" if who else "no speaker"
        lines.append(f"warning: class '{name}' is recorded by {by}: the fold that tests that speaker trains "
                     f"without '{name}' and no other fold tests it; record it for more speakers or leave it "
                     "out (--classes)")
    return lines


def fold_gap_warnings(labels: np.ndarray, classes: Sequence[str], folds) -> List[str]:
    """One warning line per fold (``ser_cl.data.splits.folds.Fold``) whose training rows lack a class
    that its test rows have: the fold cannot predict it, and its UA still averages over it."""
    lines = []
    for fold in folds:
        train = set(np.asarray(labels)[np.asarray(fold.train, dtype=np.int64)].tolist())
        test = set(np.asarray(labels)[np.asarray(fold.test, dtype=np.int64)].tolist())
        missing = sorted(test - train)
        if not missing:
            continue
        names = ", ".join(f"'{classes[i]}'" for i in missing)
        lines.append(f"warning: {fold.name}: its training speakers have no {names}, which its test speaker(s) "
                     f"({', '.join(fold.test_speakers)}) have: the fold cannot predict it, and its test UA still "
                     "averages over it (see the report's '~')")
    return lines


def pattern_lines(utterances: Sequence, root, n_examples: int = 3) -> List[str]:
    """What ``prepare --pattern`` parsed: a few examples (path -> speaker, label), spread over the
    listing, and a warning when the speaker count looks wrong: one speaker (the pattern has no
    ``{speaker}`` where the speakers differ), or more than a third as many speakers as files
    (``{speaker}`` took part of another field: ``{*}`` takes the shortest match)."""
    from pathlib import Path

    utts = list(utterances)
    if not utts:
        return []
    speakers = {u.speaker for u in utts}
    picks = sorted({round(k * (len(utts) - 1) / max(n_examples - 1, 1)) for k in range(n_examples)})
    lines = [f"--pattern parsed {len(utts)} files into {len(speakers)} speaker(s), e.g.:"]
    for k in picks:
        u = utts[k]
        try:
            shown = Path(u.path).relative_to(Path(root).resolve())
        except ValueError:
            shown = Path(u.path)
        lines.append(f"  {shown} -> speaker {u.speaker!r}, label {u.label!r}")
    if len(speakers) == 1 and len(utts) > 1:
        lines.append(f"warning: --pattern found one speaker ({next(iter(speakers))!r}) in {len(utts)} files: "
                     "speaker-independent folds need several; check where {speaker} sits in the pattern")
    elif len(speakers) * 3 > len(utts):
        lines.append(f"warning: --pattern found {len(speakers)} speakers in {len(utts)} files (more than a third "
                     "as many speakers as files): {speaker} probably holds part of another field ({*} takes the "
                     "shortest match); check the examples above")
    return lines
