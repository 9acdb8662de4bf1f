"""Speaker-independent cross-validation folds.

Protocols (``ALL_FOLD_PROTOCOLS``); in all of them no speaker is in two of train / val / test
(in ``file``, as far as the file's train and test are speaker-independent):

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
  on speaker k and validates on speaker k+1 (cyclic; with ``val_speakers`` = N on speakers k+1
  .. k+N; with 0 on none); the rest is train. One fold per speaker.
- ``speaker_groups`` (K-fold over speakers, ``n_folds`` = K, default 5): for corpora with many
  speakers (more than ~12), where leave-one-speaker-out means many folds that each test on
  little. Speakers are dealt into K groups (``speaker_groups_of``: balanced by gender and by
  utterances); fold k tests on group k and validates on ``val_speakers`` speakers of the next
  groups (k+1, k+2, ... cyclic, each group's speakers sorted); the rest is train.
- ``file``: the folds of ``folds_file`` (``ser_cl.data.splits.fold_files``: EmoBox's fold_K/ folder or
  a utt_id,fold,part CSV). Validation as the file gives it; a fold without one validates on
  ``val_speakers`` of its training speakers: those next after its test speakers in sorted
  order (cyclic), as ``speaker`` picks them, speakers without test utterances first. Store
  utterances no fold mentions stay out of every part, and folds that are not
  speaker-independent are named (FoldFileNote warnings).
- ``holdout`` (one model, e.g. to test on another corpus: docs/evaluation.md, "Cross-corpus evaluation"):
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

import bisect
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ser_cl.data.splits.fold_files import read_folds_file

FOLD_PROTOCOLS = ("auto", "session10", "session5", "speaker", "holdout")
# FOLD_PROTOCOLS keeps its original five (tests pin it); these take extra keys (n_folds, folds_file)
ALL_FOLD_PROTOCOLS = FOLD_PROTOCOLS + ("speaker_groups", "file")


class FoldFileNote(UserWarning):
    """Store utterances that no fold of a folds file mentions (left out of every part)."""


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


def speaker_groups_of(store_or_rows: Any, n_groups: int) -> list[list[str]]:
    """The ``n_groups`` speaker groups of protocol ``speaker_groups``, each sorted.

    Rule: (1) deal: speakers sorted by (gender, utterances descending, name), each in turn to the
    group with the fewest utterances among the groups with the fewest speakers of its gender
    (ties: the lower group number); an unknown gender ("") is a gender of its own. (2) polish:
    while moving one speaker from the largest group (by utterances) to the smallest, or swapping
    two speakers of one gender between them, makes max - min smaller, do the move that makes it
    smallest (ties: the first found).

    Guarantees: per gender, the groups' speaker counts differ by at most 1 (a move is only made
    from a group with more speakers of that gender); every group gets a speaker; and the groups'
    utterance counts differ by at most the largest speaker's count s_max, so the largest group is
    at most (K - 1) / K * s_max above the best possible largest group. Why: per gender, the deal
    comes in rounds of K speakers, one per group, the largest to the lightest group, so a round
    never widens max - min beyond max(max - min before it, its largest speaker); the polish
    only narrows it.
    """
    rows = _rows_of(store_or_rows)
    counts = Counter(r["speaker"] for r in rows)
    genders: dict[str, set] = defaultdict(set)
    for r in rows:
        genders[r["speaker"]].add(r.get("gender", "") or "")
    gender = {s: next(iter(g)) if len(g) == 1 else "" for s, g in genders.items()}  # mixed: unknown
    if not 2 <= n_groups <= len(counts):
        raise ValueError(f"protocol speaker_groups needs 2 <= data.n_folds <= {len(counts)} (the number of "
                         f"speakers), got n_folds = {n_groups}")
    groups: list[list[str]] = [[] for _ in range(n_groups)]
    load = [0] * n_groups
    of_gender = [Counter() for _ in range(n_groups)]
    for s in sorted(counts, key=lambda s: (gender[s], -counts[s], s)):
        fewest = min(c[gender[s]] for c in of_gender)
        k = min((i for i in range(n_groups) if of_gender[i][gender[s]] == fewest), key=lambda i: (load[i], i))
        groups[k].append(s)
        load[k] += counts[s]
        of_gender[k][gender[s]] += 1
    while True:  # polish; each step narrows max - min by at least one utterance, so it ends
        big, small = max(range(n_groups), key=lambda i: (load[i], -i)), min(range(n_groups), key=lambda i: (load[i], i))
        rest = [load[i] for i in range(n_groups) if i not in (big, small)]
        hi, lo = max(rest, default=-1), min(rest, default=load[big] + load[small])  # K = 2: no rest
        # max - min after shifting d utterances from big to small is convex in d, least at half
        # the gap: per speaker s of big, only the swap partners nearest that are worth trying
        half = (load[big] - load[small]) / 2
        partners: dict[str, list] = defaultdict(list)
        for t in groups[small]:
            partners[gender[t]].append((counts[t], t))
        for pool in partners.values():
            pool.sort()
        best = None  # (new max - min, speaker leaving big, speaker leaving small or None)
        for s in groups[big]:
            pool = partners[gender[s]]
            j = bisect.bisect_left(pool, (counts[s] - half, ""))
            options = [pool[i][1] for i in (j - 1, j) if 0 <= i < len(pool)]
            if len(groups[big]) > 1 and of_gender[big][gender[s]] > of_gender[small][gender[s]]:
                options.append(None)  # a move keeps the gender counts within 1 only from the group with more
            for t in options:
                shift = counts[s] - (counts[t] if t else 0)
                a, b = load[big] - shift, load[small] + shift
                spread = max(hi, a, b) - min(lo, a, b)
                if spread < (best[0] if best else load[big] - load[small]):
                    best = (spread, s, t)
        if best is None:
            break
        _, s, t = best
        for who, src, dst in ((s, big, small), (t, small, big)):
            if who is not None:
                groups[src].remove(who)
                groups[dst].append(who)
                load[src] -= counts[who]
                load[dst] += counts[who]
                of_gender[src][gender[who]] -= 1
                of_gender[dst][gender[who]] += 1
    return [sorted(g) for g in groups]


def _carved_val_speakers(speakers: np.ndarray, train: np.ndarray, test: np.ndarray, count: int,
                         where: str) -> list[str]:
    """``count`` validation speakers for a file fold that gives none, from its training speakers:
    those next after the test speakers in sorted order (cyclic), as ``speaker`` picks them,
    speakers without test utterances first (a speaker-dependent file, e.g. EmoBox's EmoDB folds,
    may have none: then its validation speakers also have test utterances, as its train does)."""
    train_spk, test_spk = set(speakers[train].tolist()), set(speakers[test].tolist())
    if len(train_spk) < count + 1:  # one must be left to train on
        raise ValueError(f"{where}: data.val_speakers = {count} needs at least {count + 1} training speakers, "
                         f"found {len(train_spk)}")
    everyone = sorted(train_spk | test_spk)
    start = everyone.index(max(test_spk)) + 1 if test_spk else 0
    order = [s for s in everyone[start:] + everyone[:start] if s in train_spk]
    return sorted(order, key=lambda s: s in test_spk)[:count]  # stable: keeps the cyclic order


def _file_folds(rows: Sequence[dict], speakers: np.ndarray, folds_file: str, val_speakers: int) -> list[Fold]:
    """The folds of protocol ``file`` (see the module doc)."""
    if not folds_file:
        raise ValueError("protocol file needs data.folds_file = DIR (EmoBox fold_K/ folders) or FILE.csv")
    file_folds, notes = read_folds_file(folds_file, rows)
    folds = []
    for ff in file_folds:
        train, val = ff.train, ff.val
        if val is None:
            picked = _carved_val_speakers(speakers, train, ff.test, val_speakers, f"{folds_file} {ff.name}")
            in_val = np.isin(speakers[train], picked)
            train, val = train[~in_val], train[in_val]
        folds.append(Fold(name=ff.name, train=train, val=val, test=ff.test,
                          val_speakers=sorted(set(speakers[val].tolist())),
                          test_speakers=sorted(set(speakers[ff.test].tolist()))))
    shared = [f.name for f in folds if set(speakers[np.concatenate([f.train, f.val])].tolist()) & set(f.test_speakers)]
    if shared:
        notes.append(f"{len(shared)} of the {len(folds)} folds of {folds_file} are not speaker-independent (their "
                     f"test speakers also train or validate), e.g. {', '.join(shared[:3])}")
    for note in notes:
        warnings.warn(note, FoldFileNote, stacklevel=3)
    return folds


def make_folds(store_or_rows: Any, protocol: str = "auto", holdout_speakers: int = 2, *, val_speakers: int = 1,
               n_folds: int = 5, folds_file: str = "") -> list[Fold]:
    """Folds over a FeatureStore (or its manifest rows: dicts with "speaker" and "session").

    Indices refer to row order. ``holdout_speakers``: the validation speakers of protocol
    ``holdout``; ``val_speakers``: of ``speaker``, ``speaker_groups`` and ``file`` (where the file
    gives none), and 0 for any protocol but ``holdout``: no validation set; ``n_folds``: of
    ``speaker_groups``; ``folds_file``: of ``file`` (each ignored by the other protocols).
    Raises ValueError when the data does not fit the protocol.
    """
    rows = _rows_of(store_or_rows)
    if protocol not in ALL_FOLD_PROTOCOLS:
        raise ValueError(f"unknown fold protocol {protocol!r}; choose one of {', '.join(ALL_FOLD_PROTOCOLS)}")
    if val_speakers < 0:
        raise ValueError(f"data.val_speakers must be >= 0, got {val_speakers}")
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
                a, b = held_out  # val_speakers = 0: no validation (the other speaker stays out of train)
                folds.append(_fold(len(folds), speakers, train_mask, [a] if val_speakers else [], [b]))
                folds.append(_fold(len(folds), speakers, train_mask, [b] if val_speakers else [], [a]))
            else:
                nxt = by_session[names[(si + 1) % len(names)]]
                val_spk = [nxt[si % len(nxt)]] if val_speakers else []  # 0: that speaker trains too
                folds.append(_fold(len(folds), speakers, train_mask, val_spk, list(held_out)))
    elif protocol == "holdout":
        held_out = holdout_speakers_of(rows, holdout_speakers)
        folds.append(_fold(0, speakers, np.ones(len(rows), dtype=bool), held_out, []))
    elif protocol == "speaker_groups":
        groups = speaker_groups_of(rows, n_folds)
        for k, test_spk in enumerate(groups):
            following = [s for j in range(1, n_folds) for s in groups[(k + j) % n_folds]]
            if len(following) < val_speakers + 1:  # one must be left to train on
                raise ValueError(f"protocol speaker_groups with data.val_speakers = {val_speakers} needs "
                                 f"{val_speakers + 1} speakers outside each test group; fold-{k + 1:02d} has "
                                 f"{len(following)}")
            folds.append(_fold(k, speakers, np.ones(len(rows), dtype=bool), following[:val_speakers], test_spk))
    elif protocol == "file":
        folds = _file_folds(rows, speakers, folds_file, val_speakers)
    else:  # speaker
        names = sorted(set(speakers.tolist()))
        if len(names) < val_speakers + 2:
            raise ValueError(f"protocol speaker needs at least {val_speakers + 2} speakers, found {len(names)}"
                             + (f" (data.val_speakers = {val_speakers})" if val_speakers > 1 else ""))
        for k, test_spk in enumerate(names):
            val_spk = [names[(k + j) % len(names)] for j in range(1, val_speakers + 1)]
            folds.append(_fold(k, speakers, np.ones(len(rows), dtype=bool), val_spk, [test_spk]))
    for fold in folds:
        if fold.train.size == 0:
            raise ValueError(f"{fold.name} has an empty training set")
    return folds


def make_folds_for(store_or_rows: Any, data: Any) -> list[Fold]:
    """``make_folds`` with the fold keys of a DataConfig (protocol, holdout_speakers, val_speakers,
    n_folds, folds_file): what training, dry runs and ``fold_count`` call."""
    return make_folds(store_or_rows, data.protocol, holdout_speakers=data.holdout_speakers,
                      val_speakers=data.val_speakers, n_folds=data.n_folds, folds_file=data.folds_file)


def fold_summary(folds: Sequence[Fold]) -> list[dict]:
    """JSON-friendly description of folds (names, speakers, sizes), as stored in prepare.json."""
    return [
        {
            "name": f.name, "val_speakers": f.val_speakers, "test_speakers": f.test_speakers,
            "n_train": int(f.train.size), "n_val": int(f.val.size), "n_test": int(f.test.size),
        }
        for f in folds
    ]
