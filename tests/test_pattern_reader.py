"""``--pattern``: a reader for any layout. On trees in EmoDB's and EMOVO's layouts it must list
the same utterances as the built-in readers, and on the shared real copies too (listing only).

The comparison covers the fields a pattern defines: utt_id, path, speaker, label (after
``--label-map``) and session. Gender is left out: the built-in readers know it from a speaker
table (EmoDB) or the speaker's first letter (EMOVO), which a pattern cannot express, so the
pattern reader gives unknown gender unless the pattern has ``{gender}``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import write_wav
from ser_cl.data.corpora import CORPORA, GENERIC_CORPORA, CorpusError, read_corpus
from ser_cl.data.corpora.pattern import compile_pattern, parse_label_map, read_pattern
from ser_cl.data.stores.prepare import prepare

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMODB, EMOVO = SHARED / "emodb", SHARED / "emovo"

EMODB_PATTERN = "{speaker:2}{*:3}{label:1}{*}.wav"
EMODB_MAP = "W=angry,L=boredom,E=disgust,A=fear,F=happy,T=sad,N=neutral"
EMOVO_PATTERN = "{speaker}/{label}-{speaker}-{*}.wav"
EMOVO_MAP = "dis=disgust,gio=happy,neu=neutral,pau=fear,rab=angry,sor=surprise,tri=sad"


def _wav(path, seconds=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, 0.1 * np.sin(np.arange(int(16000 * seconds)) / 7.0))


def _rows(listing):
    """What a pattern defines, per utterance (gender excluded: see the module doc)."""
    return [(u.utt_id, u.path, u.speaker, u.label, u.session) for u in listing.utterances]


def _skipped(listing):
    return sorted(s["path"] for s in listing.skipped)


@pytest.fixture
def emodb_root(tmp_path):
    root = tmp_path / "emodb"
    for name in ("03a01Fa.wav", "03a01Nc.wav", "08b02Wc.wav", "09a04Ad.wav", "16a05Lb.wav", "13b10Ta.wav", "12a02Eb.wav"):
        _wav(root / name)
    _wav(root / "notes.wav")  # no EmoDB name: skipped by both
    return root


@pytest.fixture
def emovo_root(tmp_path):
    root = tmp_path / "EMOVO"
    for utt in ("dis-f1-b1", "gio-f1-b1", "pau-f1-b2", "sor-f1-l4", "rab-m2-l3", "tri-m2-n1", "neu-m3-b3", "xyz-m3-b1"):
        _wav(root / utt.split("-")[1] / f"{utt}.wav")
    _wav(root / "m2" / "neu-f1-b2.wav")  # the name's speaker is not the folder's: skipped by both
    _wav(root / "f1" / "notes.wav")  # not an EMOVO name: skipped by both
    return root


def test_emodb_layout_same_rows_as_builtin(emodb_root):
    builtin = read_corpus(emodb_root, "emodb")
    listing = read_corpus(emodb_root, pattern=EMODB_PATTERN, label_map=EMODB_MAP)  # --pattern implies the corpus
    assert listing.corpus == "pattern"
    assert _rows(listing) == _rows(builtin) and len(builtin.utterances) == 7
    assert _skipped(listing) == _skipped(builtin) == [str(emodb_root / "notes.wav")]
    assert {u.gender for u in listing.utterances} == {""}  # the speaker table is the built-in reader's


def test_emodb_layout_in_a_subfolder_needs_any_folders(tmp_path):
    for name in ("03a01Fa.wav", "08b02Wc.wav"):
        _wav(tmp_path / "wav" / name)
    builtin = read_corpus(tmp_path, "emodb")  # the built-in reader looks at any depth
    with pytest.raises(CorpusError, match="none of the 2 audio file"):
        read_pattern(tmp_path, EMODB_PATTERN, EMODB_MAP)  # the pattern is relative to the corpus folder
    # a map may name only labels the files have (a typo is caught), so only F and W here
    assert _rows(read_pattern(tmp_path, "**/" + EMODB_PATTERN, "W=angry,F=happy")) == _rows(builtin)
    assert _rows(read_pattern(tmp_path, "wav/" + EMODB_PATTERN, "W=angry,F=happy")) == _rows(builtin)


def test_emovo_layout_same_rows_as_builtin(emovo_root):
    builtin = read_corpus(emovo_root, "emovo")
    listing = read_pattern(emovo_root, EMOVO_PATTERN, EMOVO_MAP)
    assert _rows(listing) == _rows(builtin) and len(builtin.utterances) == 8
    assert _skipped(listing) == _skipped(builtin)
    assert {Path(p).name for p in _skipped(listing)} == {"neu-f1-b2.wav", "notes.wav"}
    labels = {u.utt_id: u.label for u in listing.utterances}
    assert labels["xyz-m3-b1"] == "xyz" and labels["gio-f1-b1"] == "happy"  # unmapped labels keep their name
    # without the map the labels are the file's own codes
    assert {u.label for u in read_pattern(emovo_root, EMOVO_PATTERN).utterances} == {
        "dis", "gio", "pau", "sor", "rab", "tri", "neu", "xyz"}


def test_gender_session_and_fixed_widths(tmp_path):
    for rel in ("female/s1/ang_take01.wav", "M/s2/neu_take02.wav", "x/s3/sad_take01.wav"):
        _wav(tmp_path / rel)
    listing = read_pattern(tmp_path, "{gender}/{speaker}/{label}_{*}{session:2}.wav")
    got = {u.utt_id: (u.speaker, u.label, u.gender, u.session) for u in listing.utterances}
    assert got == {"ang_take01": ("s1", "ang", "F", "01"), "neu_take02": ("s2", "neu", "M", "02"),
                   "sad_take01": ("s3", "sad", "", "01")}


def test_shortest_match_and_suffixes(tmp_path):
    _wav(tmp_path / "a_b_c.wav")
    _wav(tmp_path / "d_e.WAV")  # the suffix matches in any case
    (tmp_path / "f_g.flac").write_bytes(b"fLaC")  # listed, but .wav matches only .wav files
    listing = read_pattern(tmp_path, "{speaker}_{label}.wav")
    got = {u.utt_id: (u.speaker, u.label) for u in listing.utterances}
    assert got == {"a_b_c": ("a", "b_c"), "d_e": ("d", "e")}  # each placeholder takes the shortest text
    assert [Path(s["path"]).name for s in listing.skipped] == ["f_g.flac"]
    assert "does not match --pattern" in listing.skipped[0]["reason"]


def test_same_file_name_in_two_folders_gets_path_ids(tmp_path):
    for rel in ("s1/happy/take1.wav", "s2/happy/take1.wav", "s2/sad/take2.wav"):
        _wav(tmp_path / rel)
    listing = read_pattern(tmp_path, "{speaker}/{label}/{*}.wav")
    assert [u.utt_id for u in listing.utterances] == ["s1_happy_take1", "s2_happy_take1", "take2"]


@pytest.mark.parametrize("pattern, message", [
    ("{speaker}/{emotion}.wav", "unknown placeholder {emotion}"),
    ("{speaker}/{*}.wav", "no {label}"),
    ("{label}/{*}.wav", "no {speaker}"),
    ("{speaker}/*_{label}.wav", "write {*} for any text"),
    ("{speaker}/{label}", "must end with an audio suffix"),
    ("{speaker}/{label.wav", "unbalanced brace"),
    ("{speaker:x}/{label}.wav", "width of 1 or more"),
    ("{speaker:2}/{label}-{speaker:3}.wav", "different widths"),
    ("/data/{speaker}/{label}.wav", "relative to the corpus folder"),
    ("", "empty"),
])
def test_bad_patterns_are_one_line_errors(pattern, message):
    with pytest.raises(CorpusError, match=re.escape(message)) as err:
        compile_pattern(pattern)
    assert "\n" not in str(err.value)


def test_label_map_errors(emovo_root):
    assert parse_label_map("dis=disgust, gio = happy") == {"dis": "disgust", "gio": "happy"}
    assert parse_label_map(None) == {} and parse_label_map({"a": "b"}) == {"a": "b"}
    for spec, message in (("dis", "bad item"), ("dis=disgust,dis=sad", "appears twice"), ("=x", "bad item")):
        with pytest.raises(CorpusError, match=message):
            parse_label_map(spec)
    with pytest.raises(CorpusError, match="names label.*ira.*labels found: dis, gio") as err:
        read_pattern(emovo_root, EMOVO_PATTERN, "dis=disgust,ira=angry")
    assert "\n" not in str(err.value)


def test_registration(emovo_root):
    assert CORPORA["pattern"].default_classes == "all" and "pattern" in GENERIC_CORPORA
    with pytest.raises(CorpusError, match="only applies to --corpus pattern"):
        read_corpus(emovo_root, "emovo", pattern=EMOVO_PATTERN)
    with pytest.raises(CorpusError, match="only applies to --corpus pattern"):
        read_corpus(emovo_root, label_map=EMOVO_MAP)  # detected as EMOVO: a label map needs --pattern
    with pytest.raises(CorpusError, match="describe the layout with --pattern"):
        read_corpus(emovo_root, "pattern")
    with pytest.raises(CorpusError, match="none of the 10 audio file"):
        read_pattern(emovo_root, "{speaker}_{label}.flac")


def test_prepare_records_pattern_and_label_map(emovo_root, tmp_path):
    result = prepare(emovo_root, tmp_path / "d", jobs=1, progress=False, pattern=EMOVO_PATTERN, label_map=EMOVO_MAP,
                     classes="neutral,happy,sad,angry")
    info = json.loads((tmp_path / "d" / "prepare.json").read_text())
    assert info["corpus"] == "pattern" and info["pattern"] == EMOVO_PATTERN
    assert info["label_map"] == parse_label_map(EMOVO_MAP)
    assert info["classes"] == ["neutral", "happy", "sad", "angry"] and result.n_utterances == 4
    assert info["selection"]["left_out"] == 0


def test_cli_pattern(emovo_root, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["prepare", str(emovo_root), "--out", str(tmp_path / "d"), "--pattern", EMOVO_PATTERN,
                              "--label-map", EMOVO_MAP, "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "prepared 8 utterances" in res.output and "from pattern" in res.output
    # default classes: every label, sorted
    assert json.loads((tmp_path / "d" / "prepare.json").read_text())["classes"] == [
        "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "xyz"]
    res = runner.invoke(app, ["prepare", str(emovo_root), "--out", str(tmp_path / "e"), "--pattern", "{speaker}/{mood}.wav"])
    assert res.exit_code == 2 and "unknown placeholder {mood}" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert "--pattern" in runner.invoke(app, ["prepare", "--help"]).output


@pytest.mark.parametrize("root, corpus, pattern, label_map, count", [
    pytest.param(EMODB, "emodb", EMODB_PATTERN, EMODB_MAP, 535, id="emodb",
                 marks=pytest.mark.skipif(not EMODB.is_dir(), reason=f"EmoDB not found at {EMODB}")),
    pytest.param(EMOVO, "emovo", EMOVO_PATTERN, EMOVO_MAP, 588, id="emovo",
                 marks=pytest.mark.skipif(not EMOVO.is_dir(), reason=f"EMOVO not found at {EMOVO}")),
])
def test_real_corpus_listing_equals_builtin(root, corpus, pattern, label_map, count):
    builtin = read_corpus(root, corpus)
    listing = read_pattern(root, pattern, label_map)
    assert len(listing.utterances) == len(builtin.utterances) == count
    assert _rows(listing) == _rows(builtin) and _skipped(listing) == _skipped(builtin)
