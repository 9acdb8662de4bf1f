"""Speaker-independent cross-validation folds.

Protocols (``FOLD_PROTOCOLS``); in all of them no speaker is in two of train / val / test:

- ``session10`` (the thesis): for each session (sorted), train on all other sessions; of the
  held-out session's two speakers (sorted, e.g. Ses01F, Ses01M) the first is validation and
  the second test, then swapped -> 2 folds per session, 10 for IEMOCAP. Needs exactly two
  speakers per session.
- ``session5`` (leave-one-session-out, most other papers): the held-out session is the test
  set (both speakers). Validation must not come from the test session (leaky) nor overlap
  train, so it is ONE speaker of the NEXT session (cyclic in sorted order), removed from
  train; fold k takes that session's speaker number k mod n (sorted) so that validation
  alternates F/M on IEMOCAP. 5 folds for IEMOCAP.
- ``speaker`` (leave-one-speaker-out, corpora without sessions): speakers sorted; fold k tests
  on speaker k and validates on speaker k+1 (cyclic); the rest is train. One fold per speaker.
- ``holdout`` (one model, e.g. to test on another corpus: README, "Cross-corpus evaluation"):
  ONE fold ``fold-01`` that trains on every speaker but ``holdout_speakers`` (default 2), which
  are validation; its test set is empty. The held-out speakers: speakers are grouped by gender
  (one group when any speaker's gender is unknown, or all have the same), the picks are dealt
  to the groups in turn (groups sorted: F before M), and each group's picks are spread evenly
  over its sorted speakers (pick i of c from n speakers: position floor((i + 1/2) n / c)).
  Needs at least ``holdout_speakers + 1`` speakers.
- ``auto``: ``session10`` when there are >= 2 sessions and every session has exactly two
  speakers (and no utterance lacks a session), else ``speaker``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

FOLD_PROTOCOLS = ("auto", "session10", "session5", "speaker", "holdout")


@dataclass
class Fold:
    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_speakers: list[str]
    test_speakers: list[str]
    # pretraining pools: [(rows, utterances drawn from them per epoch)], or None: train once each
    train_draw: Optional[list] = None


def epoch_train_indices(fold: Fold, rng: np.random.Generator) -> np.ndarray:
    """The training rows of one epoch: ``fold.train``, or each ``train_draw`` group's count drawn
    without replacement (repeated whole passes when the count exceeds the group)."""
    if fold.train_draw is None:
        return fold.train
    parts = []
    for rows, count in fold.train_draw:
        passes = -(-count // len(rows))
        parts.append(np.concatenate([rng.permutation(rows) for _ in range(passes)])[:count])
    return np.concatenate(parts)


def _rows_of(store_or_rows: Any) -> Sequence[dict]:
    return getattr(store_or_rows, "rows", store_or_rows)


def _speakers_by_session(rows: Sequence[dict]) -> dict[str, list[str]]:
    by_session: dict[str, set] = defaultdict(set)
    for r in rows:
        by_session[r.get("session", "") or ""].add(r["speaker"])
    return {s: sorted(v) for s, v in sorted(by_session.items())}


def auto_protocol(store_or_rows: Any) -> str:
    """The protocol ``auto`` resolves to for these rows (see module doc)."""
    by_session = _speakers_by_session(_rows_of(store_or_rows))
    if "" not in by_session and len(by_session) >= 2 and all(len(s) == 2 for s in by_session.values()):
        return "session10"
    return "speaker"


def _fold(k: int, speakers: np.ndarray, train_mask: np.ndarray, val_spk: list[str], test_spk: list[str]) -> Fold:
    val = np.isin(speakers, val_spk)
    test = np.isin(speakers, test_spk)
    train = train_mask & ~val & ~test
    return Fold(
        name=f"fold-{k + 1:02d}",
        train=np.flatnonzero(train).astype(np.int64),
        val=np.flatnonzero(val).astype(np.int64),
        test=np.flatnonzero(test).astype(np.int64),
        val_speakers=list(val_spk),
        test_speakers=list(test_spk),
    )


def holdout_speakers_of(store_or_rows: Any, count: int = 2) -> list[str]:
    """The ``count`` validation speakers of protocol ``holdout`` (see the module doc), sorted."""
    rows = _rows_of(store_or_rows)
    genders: dict[str, set] = defaultdict(set)
    for r in rows:
        genders[r["speaker"]].add(r.get("gender", "") or "")
    names = sorted(genders)
    if count < 1:
        raise ValueError(f"protocol holdout needs holdout_speakers >= 1, got {count}")
    if len(names) < count + 1:
        raise ValueError(f"protocol holdout with holdout_speakers={count} needs at least {count + 1} speakers, "
                         f"found {len(names)}")
    known = all(len(g) == 1 and "" not in g for g in genders.values())
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[next(iter(genders[name])) if known else ""].append(name)
    order = sorted(groups)
    dealt = {g: 0 for g in order}
    k = 0
    for _ in range(count):  # deal the picks to the groups in turn, skipping a group that is used up
        while dealt[order[k % len(order)]] >= len(groups[order[k % len(order)]]):
            k += 1
        dealt[order[k % len(order)]] += 1
        k += 1
    picked = []
    for g in order:
        members, c = groups[g], dealt[g]
        picked += [members[int((i + 0.5) * len(members) / c)] for i in range(c)]
    return sorted(picked)


def make_folds(store_or_rows: Any, protocol: str = "auto", holdout_speakers: int = 2) -> list[Fold]:
    """Folds over a FeatureStore (or its manifest rows: dicts with "speaker" and "session").

    Indices refer to row order. ``holdout_speakers``: the validation speakers of protocol
    ``holdout`` (ignored by the others). Raises ValueError when the data does not fit the protocol.
    """
    rows = _rows_of(store_or_rows)
    if protocol not in FOLD_PROTOCOLS:
        raise ValueError(f"unknown fold protocol {protocol!r}; choose one of {', '.join(FOLD_PROTOCOLS)}")
    if protocol == "auto":
        protocol = auto_protocol(rows)
    speakers = np.array([r["speaker"] for r in rows], dtype=object)
    sessions = np.array([r.get("session", "") or "" for r in rows], dtype=object)
    folds: list[Fold] = []

    if protocol in ("session10", "session5"):
        by_session = _speakers_by_session(rows)
        if "" in by_session:
            raise ValueError(f"protocol {protocol} needs a session for every utterance; use --protocol speaker")
        if len(by_session) < 2:
            raise ValueError(f"protocol {protocol} needs at least 2 sessions, found {len(by_session)}")
        names = list(by_session)
        for si, session in enumerate(names):
            held_out = by_session[session]
            train_mask = sessions != session
            if protocol == "session10":
                if len(held_out) != 2:
                    raise ValueError(
                        f"protocol session10 needs exactly 2 speakers per session; {session} has {held_out}"
                    )
                a, b = held_out
                folds.append(_fold(len(folds), speakers, train_mask, [a], [b]))
                folds.append(_fold(len(folds), speakers, train_mask, [b], [a]))
            else:
                nxt = by_session[names[(si + 1) % len(names)]]
                val_spk = nxt[si % len(nxt)]
                folds.append(_fold(len(folds), speakers, train_mask, [val_spk], list(held_out)))
    elif protocol == "holdout":
        held_out = holdout_speakers_of(rows, holdout_speakers)
        folds.append(_fold(0, speakers, np.ones(len(rows), dtype=bool), held_out, []))
    else:  # speaker
        names = sorted(set(speakers.tolist()))
        if len(names) < 3:
            raise ValueError(f"protocol speaker needs at least 3 speakers, found {len(names)}")
        for k, test_spk in enumerate(names):
            val_spk = names[(k + 1) % len(names)]
            folds.append(_fold(k, speakers, np.ones(len(rows), dtype=bool), [val_spk], [test_spk]))
    for fold in folds:
        if fold.train.size == 0:
            raise ValueError(f"{fold.name} has an empty training set")
    return folds


def fold_summary(folds: Sequence[Fold]) -> list[dict]:
    """JSON-friendly description of folds (names, speakers, sizes), as stored in prepare.json."""
    return [
        {
            "name": f.name, "val_speakers": f.val_speakers, "test_speakers": f.test_speakers,
            "n_train": int(f.train.size), "n_val": int(f.val.size), "n_test": int(f.test.size),
        }
        for f in folds
    ]
