"""``predict`` on a speaker-normalised model: where each recording's speaker statistics come from.

Without ``--enrol`` or ``--same-speaker`` a file's prediction must not depend on the other files
of the call (the checkpoint's typical-training-speaker statistics are used, with one warning);
``--enrol`` standardises with the enrolment files' statistics, checked against numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ser_cl.cli import app
from ser_cl.data.frontends.audio import load_audio
from ser_cl.data.frontends.features import SAMPLE_RATE, compute_features
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.normalize import speaker_stats
from ser_cl.data.stores.store import FeatureStore
from ser_cl.predict import FALLBACK_WARNING, predict_files
from ser_cl.train.checkpoint import load_model
from ser_cl.train.loop import train_fold

from conftest import tiny_stage


@pytest.fixture(scope="module")
def speaker_model(synth_mel_dir, tmp_path_factory):
    store = FeatureStore(synth_mel_dir)
    fold_dir = tmp_path_factory.mktemp("spk") / "fold"
    fold = make_folds(store)[0]
    train_fold(tiny_stage(model={"input_norm": "speaker"}, optim={"epochs": 1}), store, fold, fold_dir,
               torch.device("cpu"), progress=False)
    return fold_dir / "best.pt", store, fold


def _wavs(root, session, n):
    return sorted(root.glob(f"Session{session}/sentences/wav/*/*.wav"))[:n]


def _probs(result, classes):
    return np.array([result["probabilities"][c] for c in classes])


def test_a_files_prediction_does_not_depend_on_the_other_files_of_the_call(speaker_model, synth_corpus_dir):
    ckpt_path, store, fold = speaker_model
    target = _wavs(synth_corpus_dir, 1, 1)
    others = _wavs(synth_corpus_dir, 3, 2) + _wavs(synth_corpus_dir, 5, 2)  # other speakers' files
    warnings = []
    alone = predict_files(ckpt_path, target, "cpu", warn=warnings.append)[0]
    beside = predict_files(ckpt_path, target + others, "cpu")[0]
    np.testing.assert_array_equal(_probs(alone, store.classes), _probs(beside, store.classes))
    assert alone["normalisation"] == "training-speakers" and warnings == [FALLBACK_WARNING]
    # the fallback is a typical training speaker's: mean of their means, RMS of their stds
    model, ckpt = load_model(ckpt_path)
    stats = speaker_stats(store)
    train_speakers = sorted({store.speakers[i] for i in fold.train})
    mean = np.mean([stats[s][0] for s in train_speakers], axis=0)
    std = np.sqrt(np.mean([np.square(stats[s][1].astype(np.float64)) for s in train_speakers], axis=0))
    np.testing.assert_allclose(ckpt["speaker_fallback"]["mean"].numpy(), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ckpt["speaker_fallback"]["std"].numpy(), std, rtol=1e-5, atol=1e-5)
    assert ckpt["speaker_fallback"]["speakers"] == len(train_speakers)


def test_enrolment_standardises_with_the_enrolment_files_statistics(speaker_model, synth_corpus_dir, tmp_path):
    ckpt_path, store, _ = speaker_model
    targets = _wavs(synth_corpus_dir, 2, 2)
    enrol_dir = tmp_path / "enrol"
    enrol_dir.mkdir()
    enrol_files = _wavs(synth_corpus_dir, 2, 6)[2:]
    for f in enrol_files:
        (enrol_dir / f.name).write_bytes(f.read_bytes())
    results = predict_files(ckpt_path, targets, "cpu", enrol=[enrol_dir])
    model, ckpt = load_model(ckpt_path)
    frames = np.concatenate([compute_features(load_audio(f, SAMPLE_RATE), ckpt["features"]).astype(np.float64)
                             for f in enrol_files])
    mean, std = frames.mean(axis=0), frames.std(axis=0)
    with torch.no_grad():
        for r, wav in zip(results, targets):
            f = compute_features(load_audio(wav, SAMPLE_RATE), ckpt["features"]).astype(np.float64)
            x = torch.from_numpy(((f - mean) / std).astype(np.float32))[None]
            expected = torch.softmax(model(x, torch.tensor([x.shape[1]])), dim=1)[0].numpy()
            np.testing.assert_allclose(_probs(r, ckpt["classes"]), expected, atol=2e-4)
            assert r["normalisation"] == "enrol (4 files)"
    # a file's result with enrolment does not depend on the other files either
    alone = predict_files(ckpt_path, targets[:1], "cpu", enrol=enrol_files)[0]
    assert alone["probabilities"] == results[0]["probabilities"]


def test_the_cli_takes_enrol_and_same_speaker_and_refuses_both(speaker_model, synth_corpus_dir):
    ckpt_path, store, _ = speaker_model
    wavs = [str(w) for w in _wavs(synth_corpus_dir, 2, 3)]
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(ckpt_path), wavs[0], "--enrol", wavs[1], "--enrol", wavs[2], "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["normalisation"] == "enrol (2 files)" and res.stderr == ""
    res = runner.invoke(app, ["predict", str(ckpt_path), *wavs, "--same-speaker", "--json"])
    assert res.exit_code == 0 and {r["normalisation"] for r in json.loads(res.stdout)} == {"same-speaker (3 files)"}
    res = runner.invoke(app, ["predict", str(ckpt_path), wavs[0], "--json"])
    assert res.exit_code == 0 and res.stderr.strip() == FALLBACK_WARNING
    res = runner.invoke(app, ["predict", str(ckpt_path), wavs[0], "--enrol", wavs[1], "--same-speaker"])
    assert res.exit_code == 2 and "not both" in res.stderr
    res = runner.invoke(app, ["predict", str(ckpt_path), wavs[0], "--enrol", "/no/such/dir"])
    assert res.exit_code == 2 and "/no/such/dir" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_enrol_takes_a_quoted_glob_and_warns_of_one_that_the_shell_split(speaker_model, synth_corpus_dir, tmp_path):
    """``--enrol 'DIR/*.wav'`` enrols every match (the same result as naming them); ``--enrol DIR/a.wav``
    with several AUDIO files from DIR (what an unquoted glob gives) predicts, with one warning."""
    import shutil

    ckpt_path, store, _ = speaker_model
    folder = tmp_path / "takes"
    folder.mkdir()
    for w in _wavs(synth_corpus_dir, 2, 4):
        shutil.copy(w, folder / w.name)
    takes = sorted(folder.glob("*.wav"))
    target = [str(_wavs(synth_corpus_dir, 3, 1)[0])]
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(ckpt_path), *target, "--enrol", str(folder / "*.wav"), "--json"])
    assert res.exit_code == 0, res.output
    by_glob = json.loads(res.stdout)[0]
    assert by_glob["normalisation"] == "enrol (4 files)" and res.stderr == ""
    named = predict_files(ckpt_path, target, "cpu", enrol=takes)[0]
    assert by_glob["probabilities"] == named["probabilities"]
    res = runner.invoke(app, ["predict", str(ckpt_path), *target, "--enrol", str(folder / "*.flac")])
    assert res.exit_code == 2 and "no audio file matches" in res.stderr
    # what `--enrol takes/*.wav` unquoted gives: the first take enrolled, the other three predicted
    res = runner.invoke(app, ["predict", str(ckpt_path), "--enrol", str(takes[0]), *map(str, takes[1:]), "--json"])
    assert res.exit_code == 0, res.output
    warning = res.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: --enrol got one file ({takes[0]}) while AUDIO "
                                                       f"holds 3 files from its folder {folder}")
    assert f"--enrol '{folder}/*.wav'" in warning[0]
    assert {r["normalisation"] for r in json.loads(res.stdout)} == {"enrol (1 files)"}
    # one enrolment file and AUDIO from elsewhere: no warning
    res = runner.invoke(app, ["predict", str(ckpt_path), "--enrol", str(takes[0]), *target, "--json"])
    assert res.exit_code == 0 and res.stderr == ""
