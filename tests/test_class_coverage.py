"""A class recorded by one speaker is flagged: at prepare and ``ser-cl folds`` (the class named),
at training (the fold whose training speakers lack it), and in the report (a mean whose folds'
UA averages over different classes). ``--pattern``: prepare shows what it parsed and warns
when the speaker count looks wrong. On a tiny corpus in a ``SPEAKER/LABEL_N.wav`` layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import write_wav

from conftest import tiny_stage


def _corpus(root: Path, speakers=("s1", "s2", "s3", "s4"), per_class: int = 2, fear_speakers=("s2",)) -> Path:
    """angry / sad for every speaker, fear only for ``fear_speakers``."""
    t = np.arange(int(16000 * 0.4)) / 16000.0
    for s, speaker in enumerate(speakers):
        labels = ["angry", "sad"] + (["fear"] if speaker in fear_speakers else [])
        for c, label in enumerate(labels):
            for k in range(per_class):
                f0 = 140.0 * (1 + 0.3 * c) * (1 + 0.05 * s) * (1 + 0.02 * k)
                path = root / speaker / f"{label}_{k}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32))
    return root


@pytest.fixture(scope="module")
def thin_store(tmp_path_factory):
    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.stores.prepare import prepare

    raw = _corpus(tmp_path_factory.mktemp("thin-raw"))
    out = tmp_path_factory.mktemp("thin") / "data"
    said = []
    prepare(raw, out, jobs=1, progress=False, pattern="{speaker}/{label}_{*}.wav", notify=said.append,
            features=feature_params("mel", n_mels=40))
    return raw, out, said


def test_prepare_names_a_class_with_one_speaker(thin_store):
    _, _, said = thin_store
    thin = [line for line in said if line.startswith("warning: class")]
    assert thin == ["warning: class 'fear' is recorded by only 1 speaker (s2): the fold that tests that speaker "
                    "trains without 'fear' and no other fold tests it; record it for more speakers or leave it "
                    "out (--classes)"]


def test_folds_names_the_class_and_the_fold(thin_store):
    _, out, _ = thin_store
    res = CliRunner().invoke(app, ["folds", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: class 'fear' is recorded by only 1 speaker (s2)" in res.stderr
    # protocol speaker: fold k tests the k-th speaker (sorted); only s2's fold lacks fear in training
    gaps = [line for line in res.stderr.splitlines() if "training speakers have no" in line]
    assert len(gaps) == 1 and gaps[0].startswith("warning: fold-02: its training speakers have no 'fear', which "
                                                 "its test speaker(s) (s2) have")


def test_a_balanced_corpus_gets_no_class_warning(tmp_path):
    from ser_cl.data.stores.prepare import prepare

    raw = _corpus(tmp_path / "raw", fear_speakers=("s1", "s2", "s3", "s4"))
    said = []
    prepare(raw, tmp_path / "d", jobs=1, progress=False, pattern="{speaker}/{label}_{*}.wav", notify=said.append)
    assert not [line for line in said if line.startswith("warning")], said
    res = CliRunner().invoke(app, ["folds", str(tmp_path / "d")])
    assert res.exit_code == 0 and "warning" not in res.stderr


def test_training_warns_for_the_fold_without_the_class_and_the_report_marks_the_mean(thin_store, tmp_path, capsys):
    from ser_cl.eval.report import render
    from ser_cl.eval.run_results import collect_runs
    from ser_cl.eval.report_rows import build_table
    from ser_cl.experiment import Variant
    from ser_cl.train.run import run_variant

    _, out, _ = thin_store
    cfg = tiny_stage(data={"dir": str(out), "protocol": "speaker"}, optim={"epochs": 1},
                     runs_dir=str(tmp_path / "runs"), experiment="cov", device="cpu")
    run_variant(Variant(cfg, "train", {}), folds=[1, 2], progress=False)
    err = capsys.readouterr().err
    gaps = [line for line in err.splitlines() if "training speakers have no" in line]
    assert len(gaps) == 1 and gaps[0].startswith("warning: fold-02: its training speakers have no 'fear'")

    # fold-01 tests s1 (angry, sad), fold-02 tests s2 (angry, sad, fear): their UAs average 2 and 3 classes
    results = collect_runs(tmp_path / "runs")
    row = build_table(results)[0]
    confusions = {f.name: np.asarray(f.scores["test"]["confusion"]) for f in results[0].complete_folds}
    by_hand = {name: sorted(results[0].classes[i] for i in np.flatnonzero(c.sum(axis=1))) for name, c in confusions.items()}
    assert by_hand == {"fold-01": ["angry", "sad"], "fold-02": ["angry", "fear", "sad"]}
    assert row["test_ua_classes_differ"] is True
    assert {k: sorted(v) for k, v in row["test_ua_classes"].items()} == by_hand
    text = render([row], "md")
    ua_cell = [line for line in text.splitlines() if line.startswith("| train")][0].split("|")[5]
    assert ua_cell.strip().endswith("~"), text
    assert "- train: test UA averages over different classes per fold (fold-01 without fear)" in text


def test_pattern_prints_examples_and_flags_a_speaker_count_that_looks_wrong(tmp_path):
    """``{*}`` takes the shortest match: in ``LABEL/TAKE-SPEAKER-N.wav`` the pattern
    ``{label}/{*}-{speaker}.wav`` makes ``SPEAKER-N`` the speaker: 12 speakers in 24 files."""
    from ser_cl.data.stores.prepare import prepare

    t = np.arange(8000) / 16000.0
    for label in ("angry", "sad"):
        for speaker in ("a", "b", "c"):
            for k in range(4):
                (tmp_path / "raw" / label).mkdir(parents=True, exist_ok=True)
                write_wav(tmp_path / "raw" / label / f"take-{speaker}-{k}.wav", (0.2 * np.sin(t * 900)).astype(np.float32))
    said = []
    prepare(tmp_path / "raw", tmp_path / "bad", jobs=1, progress=False, pattern="{label}/{*}-{speaker}.wav",
            notify=said.append)
    assert said[0] == "--pattern parsed 24 files into 12 speaker(s), e.g.:"
    assert said[1] == "  angry/take-a-0.wav -> speaker 'a-0', label 'angry'"
    assert len([line for line in said if line.startswith("  ")]) == 3
    assert any(line.startswith("warning: --pattern found 12 speakers in 24 files (more than a third") for line in said)
    said = []
    prepare(tmp_path / "raw", tmp_path / "good", jobs=1, progress=False, pattern="{label}/take-{speaker}-{*}.wav",
            notify=said.append)
    assert said[0] == "--pattern parsed 24 files into 3 speaker(s), e.g.:"
    assert not [line for line in said if "warning: --pattern" in line]
    said = []
    prepare(tmp_path / "raw", tmp_path / "one", jobs=1, progress=False, pattern="{label}/{speaker:4}-{*}.wav", notify=said.append)
    assert any(line.startswith("warning: --pattern found one speaker") for line in said), said
