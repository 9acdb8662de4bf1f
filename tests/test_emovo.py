"""EMOVO reader: a tiny fake tree, layout detection against the other name patterns, and the
shared real copy (listing only: no prepare of the whole corpus here, too slow)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import write_wav
from ser_cl.data.corpora import CORPORA, CorpusError, detect_corpus, parse_classes, read_corpus
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore

EMOVO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emovo"
CLASSES = ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise")


def _wav(path, seconds=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 7.0))


# utt_id -> (label, speaker, gender) the reader must give for the fake tree below
EXPECTED = {
    "dis-f1-b1": ("disgust", "f1", "F"),
    "gio-f1-b1": ("happy", "f1", "F"),
    "neu-f1-b1": ("neutral", "f1", "F"),
    "pau-f1-b2": ("fear", "f1", "F"),
    "rab-f1-d1": ("angry", "f1", "F"),
    "sor-f1-l4": ("surprise", "f1", "F"),
    "tri-f1-n5": ("sad", "f1", "F"),
    "rab-m2-l3": ("angry", "m2", "M"),
    "tri-m2-n1": ("sad", "m2", "M"),
    "neu-m3-b3": ("neutral", "m3", "M"),
    "xyz-m3-b1": ("xyz", "m3", "M"),  # unknown code: kept under its own name, dropped by the class map
}


@pytest.fixture
def emovo_root(tmp_path):
    root = tmp_path / "EMOVO"
    for utt in EXPECTED:
        _wav(root / utt.split("-")[1] / f"{utt}.wav")
    _wav(root / "m2" / "neu-f1-b2.wav")  # the name's speaker is not the folder's: skipped
    _wav(root / "f1" / "notes.wav")  # not an EMOVO name: skipped
    _wav(root / "f1" / "._dis-f1-b1.wav")  # AppleDouble junk is ignored
    (root / "README.md").write_text("not audio\n")
    return root


def test_read_emovo(emovo_root):
    assert detect_corpus(emovo_root) == "emovo"
    listing = read_corpus(emovo_root)
    assert listing.corpus == "emovo"
    got = {u.utt_id: (u.label, u.speaker, u.gender) for u in listing.utterances}
    assert got == EXPECTED
    assert [u.utt_id for u in listing.utterances] == sorted(EXPECTED)
    assert all(u.session == "" and u.path.startswith("/") for u in listing.utterances)
    assert Path(listing.utterances[0].path) == (emovo_root / "f1" / "dis-f1-b1.wav").resolve()
    reasons = {Path(s["path"]).name: s["reason"] for s in listing.skipped}
    assert set(reasons) == {"neu-f1-b2.wav", "notes.wav"}
    assert "speaker f1" in reasons["neu-f1-b2.wav"] and "m2" in reasons["neu-f1-b2.wav"]
    assert "EMOVO pattern" in reasons["notes.wav"]
    assert read_corpus(emovo_root, "emovo").utterances == listing.utterances


def test_emovo_default_classes_and_prepare(emovo_root, tmp_path):
    spec = CORPORA["emovo"].default_classes
    assert spec == ",".join(CLASSES)
    class_map = parse_classes(spec)
    assert class_map.classes == CLASSES and class_map.class_of("xyz") is None
    result = prepare(emovo_root, tmp_path / "d", jobs=1, progress=False)
    assert result.corpus == "emovo" and result.n_utterances == len(EXPECTED) - 1
    store = FeatureStore(tmp_path / "d")
    assert tuple(store.classes) == CLASSES
    assert {s: g for s, g in zip(store.speakers, store.genders)} == {"f1": "F", "m2": "M", "m3": "M"}
    assert result.info["dropped_labels"] == {"xyz": 1}
    assert len(result.info["skipped"]) == 2


def test_cli_prepare_corpus_emovo(emovo_root, tmp_path):
    result = CliRunner().invoke(app, ["prepare", str(emovo_root), "--out", str(tmp_path / "d"), "--corpus", "emovo",
                                      "-q", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert f"prepared {len(EXPECTED) - 1} utterances" in result.output and "emovo" in result.output
    assert "emovo" in CliRunner().invoke(app, ["prepare", "--help"]).output


OTHER_TREES = {
    "emodb": ["wav/03a01Fa.wav", "wav/08b02Wc.wav", "wav/16a05Lb.wav"],
    "cremad": ["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1001_IEO_HAP_HI.wav", "AudioWAV/1002_TIE_NEU_XX.wav"],
    "tess": ["OAF_angry/OAF_back_angry.wav", "OAF_Pleasant_surprise/OAF_back_ps.wav", "YAF_fear/YAF_bath_fear.wav"],
}


@pytest.mark.parametrize("corpus", sorted(OTHER_TREES))
def test_other_corpora_are_not_emovo(tmp_path, corpus):
    for rel in OTHER_TREES[corpus]:
        _wav(tmp_path / rel)
    assert detect_corpus(tmp_path) == corpus
    # the EMOVO reader finds none of their files
    listing = read_corpus(tmp_path, "emovo")
    assert listing.utterances == [] and len(listing.skipped) == len(OTHER_TREES[corpus])


@pytest.mark.parametrize("corpus", sorted(OTHER_TREES))
def test_emovo_is_not_another_corpus(emovo_root, corpus):
    assert read_corpus(emovo_root, corpus).utterances == []


def test_other_names_in_speaker_folders_are_not_emovo(tmp_path):
    """Files of another corpus sorted into EMOVO-like speaker folders keep their own layout."""
    for rel in ("f1/03a01Fa.wav", "m2/08b02Wc.wav", "f1/16a05Lb.wav"):
        _wav(tmp_path / rel)
    assert detect_corpus(tmp_path) == "emodb"


def test_emovo_names_outside_speaker_folders_are_not_detected(tmp_path):
    """Detection wants the speaker folder (the reader itself, with --corpus emovo, does not)."""
    for name in ("dis-f1-b1.wav", "gio-m2-n5.wav"):
        _wav(tmp_path / "flat" / name)
    with pytest.raises(CorpusError, match="cannot tell the corpus layout"):
        detect_corpus(tmp_path / "flat")
    listing = read_corpus(tmp_path / "flat", "emovo")
    assert [(u.utt_id, u.label, u.speaker) for u in listing.utterances] == [
        ("dis-f1-b1", "disgust", "f1"), ("gio-m2-n5", "happy", "m2")]


def test_unknown_emotion_codes_alone_are_not_detected(tmp_path):
    for name in ("abc-f1-b1.wav", "xyz-f1-b2.wav"):
        _wav(tmp_path / "f1" / name)
    with pytest.raises(CorpusError, match="EMOVO"):
        detect_corpus(tmp_path)


@pytest.mark.skipif(not EMOVO.is_dir(), reason=f"EMOVO not found at {EMOVO}")
def test_real_emovo_listing():
    assert detect_corpus(EMOVO) == "emovo"
    listing = read_corpus(EMOVO)
    assert listing.corpus == "emovo" and not listing.skipped
    utts = listing.utterances
    assert len(utts) == 588 and len({u.utt_id for u in utts}) == 588
    assert Counter(u.speaker for u in utts) == {s: 98 for s in ("f1", "f2", "f3", "m1", "m2", "m3")}
    assert Counter(u.label for u in utts) == {c: 84 for c in CLASSES}
    assert {u.speaker: u.gender for u in utts} == {"f1": "F", "f2": "F", "f3": "F", "m1": "M", "m2": "M", "m3": "M"}
    assert len({u.utt_id.rsplit("-", 1)[1] for u in utts}) == 14  # sentences
    assert all(u.session == "" for u in utts)
    class_map = parse_classes(CORPORA["emovo"].default_classes)
    assert all(class_map.class_of(u.label) for u in utts)
