"""Corpus readers on tiny fake layouts, layout detection, and the --classes syntax."""

from __future__ import annotations

import numpy as np
import pytest

from ser_cl.data.frontends.audio import write_wav
from ser_cl.data.corpora import (
    CorpusError,
    detect_corpus,
    iemocap_speaker,
    parse_classes,
    parse_iemocap_labels,
    read_corpus,
)


def _wav(path, seconds=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 7.0))


IEMOCAP_TXT = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\n"
    "C-E3:\tAnger;\t(caf\xe9)\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n"
    "\n"
    "[9.0000 - 10.5000]\tSes01F_impro01_M000\tang\t[1.5000, 4.0000, 4.0000]\n"
    "C-E1:\tAnger;\t()\n"
    "\n"
    "[11.0000 - 12.0000]\tSes01F_impro01_M001\texc\t[4.0000, 3.5000, 3.5000]\n"
    "\n"
    "[13.0000 - 14.0000]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.0000]\n"
    "\n"
    "[15.0000 - 16.0000]\tSes01F_impro01_F002\tsad\t[2.0000, 2.0000, 2.0000]\n"  # no wav for this one
)


@pytest.fixture
def iemocap_root(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    emo = root / "Session1" / "dialog" / "EmoEvaluation"
    emo.mkdir(parents=True)
    (emo / "Ses01F_impro01.txt").write_bytes(IEMOCAP_TXT.encode("latin-1"))  # latin-1 byte in a comment
    # sub-folders hold other formats; a label-looking line there must NOT be read
    for sub in ("Categorical", "Attribute", "Self-evaluation"):
        (emo / sub).mkdir()
        (emo / sub / "Ses01F_impro01_cat.txt").write_text(
            "[1.0 - 2.0]\tSes01F_impro01_F000\tsad\t[1.0, 1.0, 1.0]\nSes01F_impro01_F000 :Neutral state; ()\n"
        )
    wavs = root / "Session1" / "sentences" / "wav" / "Ses01F_impro01"
    for utt in ("F000", "M000", "M001", "F001"):
        _wav(wavs / f"Ses01F_impro01_{utt}.wav")
    _wav(wavs / "._Ses01F_impro01_F000.wav")  # AppleDouble junk is ignored
    # Session 2: dialog named after M, one utterance each
    emo2 = root / "Session2" / "dialog" / "EmoEvaluation"
    emo2.mkdir(parents=True)
    (emo2 / "Ses02M_script01_1.txt").write_text(
        "[1.0 - 2.0]\tSes02M_script01_1_F003\thap\t[4.0, 3.0, 3.0]\n"
        "[3.0 - 4.0]\tSes02M_script01_1_M000\tsad\t[2.0, 2.0, 2.0]\n"
    )
    for utt in ("F003", "M000"):
        _wav(root / "Session2" / "sentences" / "wav" / "Ses02M_script01_1" / f"Ses02M_script01_1_{utt}.wav")
    return root


def test_parse_iemocap_label_lines_ignores_annotators():
    assert parse_iemocap_labels(IEMOCAP_TXT) == [
        ("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "ang"), ("Ses01F_impro01_M001", "exc"),
        ("Ses01F_impro01_F001", "fru"), ("Ses01F_impro01_F002", "sad"),
    ]


def test_iemocap_speaker_is_from_utterance_suffix_not_dialog():
    assert iemocap_speaker("Ses01F_impro01_M013", "Ses01") == ("Ses01M", "M")
    assert iemocap_speaker("Ses03M_script01_1_F000", "Ses03") == ("Ses03F", "F")
    with pytest.raises(CorpusError):
        iemocap_speaker("Ses01F_impro01_X013", "Ses01")


def test_read_iemocap(iemocap_root):
    assert detect_corpus(iemocap_root) == "iemocap"
    listing = read_corpus(iemocap_root)
    got = {u.utt_id: (u.label, u.speaker, u.session, u.gender) for u in listing.utterances}
    assert got == {
        "Ses01F_impro01_F000": ("neu", "Ses01F", "Ses01", "F"),
        "Ses01F_impro01_M000": ("ang", "Ses01M", "Ses01", "M"),
        "Ses01F_impro01_M001": ("exc", "Ses01M", "Ses01", "M"),
        "Ses01F_impro01_F001": ("fru", "Ses01F", "Ses01", "F"),
        "Ses02M_script01_1_F003": ("hap", "Ses02F", "Ses02", "F"),
        "Ses02M_script01_1_M000": ("sad", "Ses02M", "Ses02", "M"),
    }
    assert [u.utt_id for u in listing.utterances] == sorted(got)
    assert len(listing.skipped) == 1 and "missing audio" in listing.skipped[0]["reason"]
    assert listing.skipped[0]["path"].endswith("Ses01F_impro01_F002.wav")
    assert all(u.path.startswith("/") for u in listing.utterances)


def test_read_emodb(tmp_path):
    for name in ("03a01Fa.wav", "08b02Wc.wav", "16a05Lb.wav", "notes.wav"):
        _wav(tmp_path / "wav" / name)
    assert detect_corpus(tmp_path) == "emodb"
    listing = read_corpus(tmp_path, "emodb")
    got = {u.utt_id: (u.label, u.speaker, u.gender, u.session) for u in listing.utterances}
    assert got == {"03a01Fa": ("happy", "03", "M", ""), "08b02Wc": ("angry", "08", "F", ""),
                   "16a05Lb": ("boredom", "16", "F", "")}
    assert [s["path"].rsplit("/", 1)[1] for s in listing.skipped] == ["notes.wav"]


def test_read_ravdess(tmp_path):
    names = ["03-01-05-01-02-01-12.wav", "03-01-01-01-01-01-12.wav", "03-02-03-01-01-01-12.wav"]
    for name in names:
        _wav(tmp_path / "Actor_12" / name)
    _wav(tmp_path / "Actor_07" / "03-01-08-02-02-02-07.wav")
    assert detect_corpus(tmp_path) == "ravdess"
    listing = read_corpus(tmp_path)
    got = {u.utt_id: (u.label, u.speaker, u.gender) for u in listing.utterances}
    assert got == {
        "03-01-05-01-02-01-12": ("angry", "Actor_12", "F"),
        "03-01-01-01-01-01-12": ("neutral", "Actor_12", "F"),
        "03-01-08-02-02-02-07": ("surprised", "Actor_07", "M"),
    }
    assert len(listing.skipped) == 1 and "song" not in listing.skipped[0]["reason"]
    assert "vocal channel 02" in listing.skipped[0]["reason"]


@pytest.mark.parametrize("with_demographics", [False, True])
def test_read_cremad(tmp_path, with_demographics):
    audio = tmp_path / "AudioWAV"
    for name in ("1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_NEU_XX.wav"):
        _wav(audio / name)
    if with_demographics:
        (tmp_path / "VideoDemographics.csv").write_text(
            "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n"
        )
    assert detect_corpus(audio) == "cremad"
    listing = read_corpus(audio)
    got = {u.utt_id: (u.label, u.speaker, u.gender) for u in listing.utterances}
    m, f = ("M", "F") if with_demographics else ("", "")
    assert got == {"1001_DFA_ANG_XX": ("angry", "1001", m), "1001_IEO_HAP_HI": ("happy", "1001", m),
                   "1002_TIE_NEU_XX": ("neutral", "1002", f)}


def test_read_tess(tmp_path):
    for folder, name in [("OAF_angry", "OAF_back_angry.wav"), ("OAF_Pleasant_surprise", "OAF_back_ps.wav"),
                         ("YAF_fear", "YAF_bath_fear.wav")]:
        _wav(tmp_path / "TESS" / folder / name)
    assert detect_corpus(tmp_path) == "tess"
    listing = read_corpus(tmp_path)
    got = {u.utt_id: (u.label, u.speaker, u.gender) for u in listing.utterances}
    assert got == {"OAF_back_angry": ("angry", "OAF", "F"), "OAF_back_ps": ("ps", "OAF", "F"),
                   "YAF_bath_fear": ("fear", "YAF", "F")}


def test_read_csv_manifest_relative_paths(tmp_path):
    _wav(tmp_path / "audio" / "a" / "x.wav")
    _wav(tmp_path / "audio" / "b" / "x.wav")  # same stem: ids fall back to the relative path
    _wav(tmp_path / "elsewhere" / "y.wav")
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,label,speaker,session,gender\n"
        "../audio/a/x.wav,happy,s1,1,female\n"
        "../audio/b/x.wav,sad,s2,1,M\n"
        f"{tmp_path / 'elsewhere' / 'y.wav'},happy,s3,,\n"
        "../audio/missing.wav,sad,s3,,\n"
    )
    assert detect_corpus(manifest) == "csv"
    listing = read_corpus(manifest)
    got = {u.utt_id: (u.path, u.label, u.speaker, u.session, u.gender) for u in listing.utterances}
    assert got == {
        "audio_a_x": (str((tmp_path / "audio" / "a" / "x.wav").resolve()), "happy", "s1", "1", "F"),
        "audio_b_x": (str((tmp_path / "audio" / "b" / "x.wav").resolve()), "sad", "s2", "1", "M"),
        "y": (str((tmp_path / "elsewhere" / "y.wav").resolve()), "happy", "s3", "", ""),
    }
    assert len(listing.skipped) == 1 and "missing audio" in listing.skipped[0]["reason"]


def test_csv_manifest_missing_columns(tmp_path):
    (tmp_path / "m.csv").write_text("file,emotion\nx.wav,happy\n")
    with pytest.raises(CorpusError, match="path,label,speaker"):
        read_corpus(tmp_path / "m.csv")


def test_detection_errors_are_one_line(tmp_path):
    with pytest.raises(CorpusError, match="no such file") as missing:
        detect_corpus(tmp_path / "nope")
    _wav(tmp_path / "odd" / "recording.wav")
    with pytest.raises(CorpusError, match="expected one of") as unknown:
        detect_corpus(tmp_path / "odd")
    for err in (missing, unknown):
        assert "\n" not in str(err.value)
    assert "IEMOCAP" in str(unknown.value) and "RAVDESS" in str(unknown.value)
    with pytest.raises(CorpusError, match="unknown corpus"):
        read_corpus(tmp_path / "odd", "timit")


def test_parse_classes_select_merge_rename():
    cm = parse_classes("neu=neutral, hap+exc=happy,sad,ang=angry")
    assert cm.classes == ("neutral", "happy", "sad", "angry")
    assert cm.mapping == {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
    assert cm.class_of("fru") is None
    assert parse_classes("hap+exc,neu").classes == ("hap", "neu")
    merged = parse_classes("hap=happy,exc=happy,neu")  # same NAME twice merges
    assert merged.classes == ("happy", "neu") and merged.mapping["exc"] == "happy"
    assert parse_classes("all", available=["b", "a", "b"]).classes == ("a", "b")


@pytest.mark.parametrize("spec", ["", "neu,,sad", "neu,neu", "hap+exc=happy,exc", "a=b=c", "a+=x", "=x"])
def test_parse_classes_rejects_bad_specs(spec):
    with pytest.raises(CorpusError):
        parse_classes(spec)
