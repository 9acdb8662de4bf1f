"""Protocol speaker_groups (K folds of speaker groups balanced by gender and utterances), checked
against brute force; and data.val_speakers for protocol speaker."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.config import ConfigError, stage_from_dict
from ser_cl.data.splits.folds import make_folds, speaker_groups_of

# EmoDB's speakers: (name, utterances in the 7-class store, gender)
EMODB = [("03", 49, "M"), ("08", 58, "F"), ("09", 43, "F"), ("10", 38, "M"), ("11", 55, "M"), ("12", 35, "M"),
         ("13", 61, "F"), ("14", 69, "F"), ("15", 56, "M"), ("16", 71, "F")]


def _rows(speakers):
    """Manifest rows: ``n`` utterances per (name, n, gender)."""
    return [{"speaker": s, "gender": g, "session": ""} for s, n, g in speakers for _ in range(n)]


def _loads(groups, sizes):
    return [sum(sizes[s] for s in g) for g in groups]


def _best_max_load(sizes, k):
    """Brute force: the smallest possible largest group over every assignment to k non-empty groups."""
    names = list(sizes)
    best = None
    for assign in itertools.product(range(k), repeat=len(names)):
        if len(set(assign)) == k:
            worst = max(sum(sizes[n] for n, a in zip(names, assign) if a == j) for j in range(k))
            best = worst if best is None else min(best, worst)
    return best


def _check_folds(rows, folds, groups):
    speakers = np.array([r["speaker"] for r in rows])
    assert sorted(s for f in folds for s in f.test_speakers) == sorted(set(speakers))  # each tested exactly once
    for f, g in zip(folds, groups):
        assert f.test_speakers == g
        parts = [set(speakers[f.train]), set(speakers[f.val]), set(speakers[f.test])]
        assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2]), f.name
        assert len(np.concatenate([f.train, f.val, f.test])) == len(rows)


@pytest.mark.parametrize("k", [2, 3])
def test_groups_are_within_the_bound_of_the_brute_force_optimum(k):
    """The bound tested (speaker_groups_of's docstring): max - min group <= s_max (the largest
    speaker), hence largest group <= brute-force optimum + (K - 1) / K * s_max; and per gender the
    groups' speaker counts differ by at most 1. 6 speakers, 150 random cases per K."""
    rng = random.Random(k)
    for _ in range(150):
        speakers = [(f"s{i}", rng.randint(1, 40), rng.choice("FM")) for i in range(6)]
        sizes = {s: n for s, n, _ in speakers}
        rows = _rows(speakers)
        groups = speaker_groups_of(rows, k)
        loads = _loads(groups, sizes)
        s_max = max(sizes.values())
        assert sorted(s for g in groups for s in g) == sorted(sizes) and all(groups)
        assert max(loads) - min(loads) <= s_max, (speakers, groups)
        assert max(loads) <= _best_max_load(sizes, k) + (k - 1) / k * s_max, (speakers, groups)
        gender_of = {s: g for s, _, g in speakers}
        for gender in "FM":
            per_group = [sum(gender_of[s] == gender for s in g) for g in groups]
            assert max(per_group) - min(per_group) <= 1, (speakers, groups)
        folds = make_folds(rows, "speaker_groups", n_folds=k)
        _check_folds(rows, folds, groups)


def test_emodb_speakers_split_evenly_and_by_gender():
    rows = _rows(EMODB)
    sizes = {s: n for s, n, _ in EMODB}
    gender = {s: g for s, _, g in EMODB}
    groups = speaker_groups_of(rows, 3)
    assert max(_loads(groups, sizes)) - min(_loads(groups, sizes)) <= 3  # 3 is the brute-force optimum
    for g in groups:
        assert sorted(Counter(gender[s] for s in g).values()) in ([1, 2], [2, 2])
    groups5 = speaker_groups_of(rows, 5)
    assert all(sorted(gender[s] for s in g) == ["F", "M"] for g in groups5)  # one of each gender per group
    folds = make_folds(rows, "speaker_groups")  # default n_folds 5
    assert [f.name for f in folds] == [f"fold-{k:02d}" for k in range(1, 6)]
    _check_folds(rows, folds, groups5)
    # validation: the first speaker (sorted) of the next group, cyclic
    assert [f.val_speakers for f in folds] == [[groups5[(k + 1) % 5][0]] for k in range(5)]
    two = make_folds(rows, "speaker_groups", n_folds=5, val_speakers=2)
    assert [f.val_speakers for f in two] == [groups5[(k + 1) % 5] for k in range(5)]
    _check_folds(rows, two, groups5)
    assert make_folds(rows, "speaker_groups")[2].train.tolist() == folds[2].train.tolist()  # deterministic


def test_unknown_gender_and_refusals():
    rows = [{"speaker": s, "session": ""} for s, n in zip("abcde", (5, 4, 3, 2, 1)) for _ in range(n)]
    assert speaker_groups_of(rows, 2) == [["a", "d", "e"], ["b", "c"]]  # 8 and 7 utterances
    for k in (1, 6):
        with pytest.raises(ValueError, match=r"needs 2 <= data.n_folds <= 5") as err:
            make_folds(rows, "speaker_groups", n_folds=k)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="outside each test group"):
        make_folds(rows, "speaker_groups", n_folds=2, val_speakers=3)
    with pytest.raises(ConfigError, match="data.n_folds must be >= 2"):
        stage_from_dict({"data": {"protocol": "speaker_groups", "n_folds": 1}}, "test")
    cfg = stage_from_dict({"data": {"protocol": "speaker_groups", "n_folds": 3, "val_speakers": 2}}, "test")
    assert (cfg.data.n_folds, cfg.data.val_speakers) == (3, 2)


def test_speaker_protocol_takes_the_next_val_speakers():
    rows = [{"speaker": s, "session": ""} for s in "abcde" for _ in range(2)]
    assert [f.val_speakers for f in make_folds(rows, "speaker")] == [[s] for s in "bcdea"]  # default: as before
    folds = make_folds(rows, "speaker", val_speakers=2)
    assert [f.val_speakers for f in folds] == [["b", "c"], ["c", "d"], ["d", "e"], ["e", "a"], ["a", "b"]]
    assert [f.name for f in folds] == [f"fold-{k:02d}" for k in range(1, 6)] and all(f.train.size == 4 for f in folds)
    with pytest.raises(ValueError, match="needs at least 5 speakers, found 4"):
        make_folds(rows[:8], "speaker", val_speakers=3)
    with pytest.raises(ValueError, match="val_speakers must be >= 0"):
        make_folds(rows, "speaker", val_speakers=-1)


def test_cli_lists_speaker_groups(synth_data_dir):
    result = CliRunner().invoke(app, ["folds", str(synth_data_dir), "--protocol", "speaker_groups", "--n-folds", "5"])
    assert result.exit_code == 0, result.output
    assert "5 folds (speaker_groups) over 160 utterances, 10 speakers" in result.output
    assert "fold-05" in result.output
    bad = CliRunner().invoke(app, ["folds", str(synth_data_dir), "--protocol", "speaker_groups", "--n-folds", "11"])
    assert bad.exit_code == 2 and "n_folds <= 10" in bad.output
