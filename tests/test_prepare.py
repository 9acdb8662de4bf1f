"""``prepare``: store contents against an independent recomputation, bad files, --classes,
atomicity (prepare.json last) and reuse of the per-utterance cache."""

from __future__ import annotations

import json
import os
import wave

import numpy as np
import pytest
from typer.testing import CliRunner

import ser_cl
from ser_cl.cli import app
from ser_cl.data.stores import prepare as prepare_module
from ser_cl.data.corpora import CorpusError
from ser_cl.data.frontends.features import log_spectrogram
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore


def _pcm16(path, x, rate, channels=1):
    ints = np.clip(np.round(np.asarray(x) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(ints.tobytes())


@pytest.fixture
def csv_corpus(tmp_path):
    """Six good files (three speakers, two labels, one stereo 22.05 kHz) and four bad ones."""
    root = tmp_path / "corpus"
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = ["path,label,speaker"]
    for k in range(6):
        name = f"good{k}.wav"
        if k == 5:
            _pcm16(root / name, 0.2 * rng.standard_normal(2 * 22050), 22050, channels=2)  # 1 s stereo
        else:
            _pcm16(root / name, 0.2 * rng.standard_normal(8000 + 500 * k), 16000)
        lines.append(f"{name},{'a' if k % 2 else 'b'},spk{k % 3}")
    (root / "empty.wav").write_bytes(b"")
    (root / "text.wav").write_text("hello, not audio")
    _pcm16(root / "short.wav", np.zeros(1600), 16000)  # 0.1 s
    _pcm16(root / "cut.wav", 0.1 * rng.standard_normal(16000), 16000)
    data = (root / "cut.wav").read_bytes()
    (root / "cut.wav").write_bytes(data[: len(data) // 2])
    for name in ("empty.wav", "text.wav", "short.wav", "cut.wav"):
        lines.append(f"{name},a,spk0")
    (root / "list.csv").write_text("\n".join(lines) + "\n")
    return root / "list.csv"


def _reference_features(path, rate, params=None):
    """Independent read (stdlib wave) + scipy resample + the feature function, as float16."""
    from scipy.signal import resample_poly

    with wave.open(str(path)) as w:
        ch = w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, ch).mean(axis=1) / 32768
    if rate != 16000:
        x = resample_poly(x, 320, 441)
    if params is not None:
        from ser_cl.data.frontends.features import compute_features

        return compute_features(x.astype(np.float32), params).astype(np.float16)
    return log_spectrogram(x.astype(np.float32)).astype(np.float16)


def test_prepare_store_and_skips(csv_corpus, tmp_path):
    out = tmp_path / "data"
    result = prepare(csv_corpus, out, jobs=2, progress=False)
    assert result.n_utterances == 6 and result.n_computed == 10 and result.n_cached == 0
    # the summary counts what was stored: 6 rows, all computed now (not the 10 files read, 4 of them skipped)
    from ser_cl.data.stores.summary import prepare_lines

    assert prepare_lines(result)[0].endswith("(6 computed, 0 from cache)"), prepare_lines(result)[0]
    info = json.loads((out / "prepare.json").read_text())
    reasons = {os.path.basename(s["path"]): s["reason"] for s in info["skipped"]}
    assert set(reasons) == {"empty.wav", "text.wav", "short.wav", "cut.wav"}
    assert "empty" in reasons["empty.wav"] and "not a WAV" in reasons["text.wav"]
    assert "too short" in reasons["short.wav"] and "truncated" in reasons["cut.wav"]
    assert info["ser_cl_version"] == ser_cl.__version__
    assert info["corpus"] == "csv" and info["classes"] == ["a", "b"]
    assert info["counts_per_class"] == {"a": 3, "b": 3}
    assert info["counts_per_speaker"] == {"spk0": 2, "spk1": 2, "spk2": 2}
    assert info["features"]["n_fft"] == 512 and info["features"]["floor"] == 1e-10
    assert info["folds"]["protocol"] == "speaker" and len(info["folds"]["folds"]) == 3

    store = FeatureStore(out)
    assert len(store) == 6 and store.n_freq == 257 and store.classes == ["a", "b"]
    assert store.utt_ids == [f"good{k}" for k in range(6)]
    assert store.labels.tolist() == [1, 0, 1, 0, 1, 0]
    assert store.speakers == ["spk0", "spk1", "spk2"] * 2
    for i in range(6):
        path = store.rows[i]["path"]
        assert os.path.isabs(path)
        ref = _reference_features(path, 22050 if i == 5 else 16000)
        assert store[i].dtype == np.float16 and store[i].shape == ref.shape
        assert store.lengths[i] == ref.shape[0] == int(store.rows[i]["n_frames"])
        np.testing.assert_allclose(store[i].astype(np.float32), ref.astype(np.float32), atol=0.02)
    assert float(store.rows[5]["duration_s"]) == pytest.approx(1.0, abs=1e-3)


def test_rerun_reuses_cache_and_recomputes_changed_files(csv_corpus, tmp_path):
    out = tmp_path / "data"
    prepare(csv_corpus, out, jobs=1, progress=False)
    before = (out / "features.npy").read_bytes()
    again = prepare(csv_corpus, out, jobs=1, progress=False)
    assert again.n_computed == 0 and again.n_cached == 10  # bad files' reasons are cached too
    assert (again.stored_computed, again.stored_cached) == (0, again.n_utterances)
    assert (out / "features.npy").read_bytes() == before
    target = csv_corpus.parent / "good2.wav"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = prepare(csv_corpus, out, jobs=1, progress=False)
    assert third.n_computed == 1 and third.n_cached == 9
    # a looser --min-duration keeps the short file without recomputing anything
    fourth = prepare(csv_corpus, out, jobs=1, progress=False, min_duration=0.05)
    assert fourth.n_computed == 0 and fourth.n_utterances == 7


def test_interrupted_prepare_never_reads_as_complete(csv_corpus, tmp_path, monkeypatch):
    out = tmp_path / "data"
    prepare(csv_corpus, out, jobs=1, progress=False)
    assert len(FeatureStore(out)) == 6

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare(csv_corpus, out, jobs=1, progress=False)
    assert not (out / "prepare.json").exists()  # the old marker went first
    with pytest.raises(FileNotFoundError, match="incomplete.*ser-cl prepare"):
        FeatureStore(out)
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary files left behind


def test_store_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="ser-cl prepare"):
        FeatureStore(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a prepared data directory"):
        FeatureStore(tmp_path)


def test_classes_mapping_on_iemocap_layout(synth_corpus_dir, synth_data_dir, tmp_path):
    info = json.loads((synth_data_dir / "prepare.json").read_text())
    assert info["corpus"] == "iemocap"
    assert info["classes"] == ["neutral", "happy", "sad", "angry"]
    assert info["counts_per_class"] == {"neutral": 40, "happy": 40, "sad": 40, "angry": 40}
    assert info["dropped_labels"] == {"fru": 10}
    store = FeatureStore(synth_data_dir)
    happy_sources = {r["corpus_label"] for r in store.rows if r["label"] == "happy"}
    assert happy_sources == {"hap", "exc"}

    result = prepare(synth_corpus_dir, tmp_path / "d2", classes="ang=angry,sad,hap", jobs=1, progress=False)
    assert result.info["classes"] == ["angry", "sad", "hap"]
    assert result.info["counts_per_class"] == {"angry": 40, "sad": 40, "hap": 20}
    assert result.info["dropped_labels"] == {"exc": 20, "fru": 10, "neu": 40}
    with pytest.raises(CorpusError, match="matches no utterance"):
        prepare(synth_corpus_dir, tmp_path / "d3", classes="neu,happy", jobs=1, progress=False)


def test_cli_prepare_reports_and_fails_in_one_line(csv_corpus, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["prepare", str(csv_corpus), "--out", str(tmp_path / "d"), "-q", "--jobs", "1"])
    assert ok.exit_code == 0, ok.output
    assert "prepared 6 utterances" in ok.output and "skipped 4" in ok.output
    bad = runner.invoke(app, ["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
    assert bad.exit_code == 2
    assert "no such file or folder" in bad.output


def test_front_ends_never_share_cache(csv_corpus, tmp_path):
    """Two front-ends prepared in turn into ONE DATA_DIR: neither reuses the other's cache entries,
    each finds its own again, and the store always holds the front-end of the last run."""
    from ser_cl.data.frontends.features import feature_params

    out = tmp_path / "data"
    spec = prepare(csv_corpus, out, jobs=1, progress=False)
    spec_bytes = (out / "features.npy").read_bytes()
    mel24 = feature_params("mel", n_mels=24, f_min=100, f_max=7000)
    first = prepare(csv_corpus, out, jobs=1, progress=False, features=mel24)
    assert first.n_computed == 10 and first.n_cached == 0  # nothing from the spectrogram's entries
    store = FeatureStore(out)
    assert store.n_freq == 24 and store.feature_params == mel24
    for i in range(len(store)):
        ref = _reference_features(store.rows[i]["path"], 22050 if i == 5 else 16000, mel24)
        assert store[i].shape == ref.shape == (store.lengths[i], 24)
        np.testing.assert_allclose(store[i].astype(np.float32), ref.astype(np.float32), atol=0.02)
    mel64 = prepare(csv_corpus, out, jobs=1, progress=False, features="mel")  # other n_mels: other keys
    assert mel64.n_computed == 10 and FeatureStore(out).n_freq == 64
    back = prepare(csv_corpus, out, jobs=1, progress=False)
    assert back.n_computed == 0 and back.n_cached == 10 and FeatureStore(out).n_freq == 257
    assert (out / "features.npy").read_bytes() == spec_bytes
    assert spec.info["features"]["name"] == "spectrogram" and back.info["features"] == spec.info["features"]
    again = prepare(csv_corpus, out, jobs=1, progress=False, features=mel24)
    assert again.n_computed == 0 and again.n_cached == 10 and FeatureStore(out).n_freq == 24


def test_cli_prepare_feature_options(csv_corpus, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["prepare", str(csv_corpus), "--out", str(tmp_path / "m"), "-q", "--jobs", "1",
                             "--features", "mel", "--n-mels", "32", "--f-max", "7000"])
    assert ok.exit_code == 0, ok.output
    info = json.loads((tmp_path / "m" / "prepare.json").read_text())
    assert (info["features"]["name"], info["features"]["n_mels"], info["features"]["f_min"], info["features"]["f_max"]) == \
        ("mel", 32, 0.0, 7000.0)
    assert FeatureStore(tmp_path / "m").n_freq == 32
    for args, message in [
        (["--features", "mel", "--f-max", "9000"], "f_max must be <= 8000"),
        (["--features", "mel", "--n-mels", "300"], "use at most"),
        (["--n-mels", "40"], "only for the mel front-end"),
        (["--features", "mfcc"], "unknown feature kind"),
    ]:
        bad = runner.invoke(app, ["prepare", str(csv_corpus), "--out", str(tmp_path / "bad"), "-q", *args])
        assert bad.exit_code == 2, (args, bad.output)
        lines = [line for line in bad.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, bad.output)
    assert not (tmp_path / "bad").exists()  # refused before anything is written
