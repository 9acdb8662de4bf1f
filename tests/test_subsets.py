"""``prepare --subset improvised|scripted`` (IEMOCAP) and ``--include-speakers`` /
``--exclude-speakers`` (any corpus), against brute-force counts over the synthetic IEMOCAP
corpus' files (its dialogs are ``SesNNF_impro01`` and ``SesNNM_script01_1``)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import write_wav
from ser_cl.data.corpora import CorpusError, read_corpus
from ser_cl.data.stores.prepare import prepare, select_utterances

FOUR_CLASSES = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}


def _brute_force(root: Path) -> list[tuple[str, str, str]]:
    """(utterance, label, speaker) of every audio file with a label line, by plain string work:
    label lines start with '[' and hold the utterance name and label as the 2nd and 3rd
    tab-separated fields; the speaker is the session plus the last name part's first letter."""
    out = []
    for label_file in sorted(root.glob("Session*/dialog/EmoEvaluation/*.txt")):
        for line in label_file.read_bytes().decode("latin-1").splitlines():
            if not line.startswith("["):
                continue
            fields = line.split("\t")
            utt, label = fields[1], fields[2]
            wav = label_file.parents[2] / "sentences" / "wav" / label_file.stem / f"{utt}.wav"
            if wav.is_file():
                out.append((utt, label, utt[:5] + utt.split("_")[-1][0]))
    return out


def test_synthetic_corpus_has_both_kinds(synth_corpus_dir):
    names = [utt for utt, _, _ in _brute_force(synth_corpus_dir)]
    assert sum("_impro" in n for n in names) > 0 and sum("_script" in n for n in names) > 0
    assert all(("_impro" in n) != ("_script" in n) for n in names)


@pytest.mark.parametrize("subset, marker", [("improvised", "_impro"), ("scripted", "_script")])
def test_subset_listing_matches_brute_force(synth_corpus_dir, subset, marker):
    listing = read_corpus(synth_corpus_dir)
    kept, info = select_utterances(listing, subset=subset)
    expected = sorted(utt for utt, _, _ in _brute_force(synth_corpus_dir) if marker in utt)
    assert sorted(u.utt_id for u in kept) == expected
    assert info == {"subset": subset, "include_speakers": None, "exclude_speakers": None,
                    "left_out": len(listing.utterances) - len(expected)}


def test_prepare_improvised_without_two_speakers(synth_corpus_dir, tmp_path):
    """--subset and --exclude-speakers together: the store's classes, speakers and counts are
    the brute-force ones, and prepare.json records the selection."""
    out = tmp_path / "impro"
    result = prepare(synth_corpus_dir, out, jobs=1, progress=False, subset="improvised",
                     exclude_speakers="Ses01F, Ses02M")
    expected = [(utt, label, spk) for utt, label, spk in _brute_force(synth_corpus_dir)
                if "_impro" in utt and spk not in ("Ses01F", "Ses02M")]
    counts = Counter(FOUR_CLASSES[label] for _, label, _ in expected if label in FOUR_CLASSES)
    info = json.loads((out / "prepare.json").read_text())
    assert result.n_utterances == sum(counts.values())
    assert info["counts_per_class"] == {c: counts[c] for c in ("neutral", "happy", "sad", "angry")}
    assert info["counts_per_speaker"] == dict(sorted(Counter(
        spk for _, label, spk in expected if label in FOUR_CLASSES).items()))
    assert info["dropped_labels"] == dict(sorted(Counter(
        label for _, label, _ in expected if label not in FOUR_CLASSES).items()))
    everything = len(_brute_force(synth_corpus_dir))
    assert info["selection"] == {"subset": "improvised", "include_speakers": None,
                                 "exclude_speakers": ["Ses01F", "Ses02M"], "left_out": everything - len(expected)}
    manifest = (out / "manifest.csv").read_text().splitlines()[1:]
    assert manifest and all("_impro" in row.split(",")[0] for row in manifest)
    # left-out utterances are neither computed nor counted as skipped
    assert not info["skipped"] and result.n_computed == len(expected)
    assert info["speaker_stats"]["utterances"] == len(expected)


def test_include_speakers(synth_corpus_dir):
    listing = read_corpus(synth_corpus_dir)
    kept, info = select_utterances(listing, include_speakers=["Ses03F", "Ses05M"])
    expected = sorted(utt for utt, _, spk in _brute_force(synth_corpus_dir) if spk in ("Ses03F", "Ses05M"))
    assert sorted(u.utt_id for u in kept) == expected
    assert info["include_speakers"] == ["Ses03F", "Ses05M"]


def test_selection_errors(synth_corpus_dir):
    listing = read_corpus(synth_corpus_dir)
    with pytest.raises(CorpusError, match="unknown speaker.*Ses09F; this corpus' speakers: Ses01F, Ses01M, .*Ses05M$") as err:
        select_utterances(listing, exclude_speakers="Ses01F,Ses09F")
    assert "\n" not in str(err.value)
    with pytest.raises(CorpusError, match="not both"):
        select_utterances(listing, include_speakers="Ses01F", exclude_speakers="Ses01M")
    with pytest.raises(CorpusError, match="choose improvised or scripted"):
        select_utterances(listing, subset="impro")
    speakers = sorted({u.speaker for u in listing.utterances})
    with pytest.raises(CorpusError, match="no utterance of iemocap left"):
        select_utterances(listing, exclude_speakers=speakers)


def test_subset_refused_for_other_corpora(tmp_path):
    for name in ("03a01Fa.wav", "08b02Wc.wav"):
        path = tmp_path / "emodb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, 0.1 * np.sin(np.arange(8000) / 7.0))
    with pytest.raises(CorpusError, match="--subset applies to IEMOCAP only.*this corpus is emodb"):
        select_utterances(read_corpus(tmp_path / "emodb"), subset="improvised")
    res = CliRunner().invoke(app, ["prepare", str(tmp_path / "emodb"), "--out", str(tmp_path / "d"),
                                   "--subset", "scripted", "-q"])
    assert res.exit_code == 2 and "--subset applies to IEMOCAP only" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["prepare", str(tmp_path / "emodb"), "--out", str(tmp_path / "d"),
                                   "--include-speakers", "03,99", "-q"])
    assert res.exit_code == 2 and "unknown speaker(s) 99; this corpus' speakers: 03, 08" in res.output


def test_cli_help_names_the_options():
    text = CliRunner().invoke(app, ["prepare", "--help"]).output
    for option in ("--subset", "--include-speakers", "--exclude-speakers", "--pattern", "--label-map"):
        assert option in text
