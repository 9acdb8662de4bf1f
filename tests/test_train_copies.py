"""Speed-perturbed training copies: ``prepare --speed`` and ``data.train_copies``.

References: a sine's frequency after ``change_speed`` (physics), ``scipy.signal.resample_poly``
for the perturbed store's frames, the fold's utterance ids for which copies join training, and
numpy for the copies' speaker normalisation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_stage
from scipy.signal import resample_poly

from ser_cl.config import ConfigError
from ser_cl.data.frontends.audio import change_speed, load_audio
from ser_cl.data.batches.copies import copy_dirs, load_copies, with_copies
from ser_cl.data.frontends.features import compute_features, feature_params
from ser_cl.data.splits.folds import make_folds_for
from ser_cl.data.stores.normalize import model_inputs
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore

MEL = feature_params("mel", n_mels=40)


@pytest.fixture(scope="module")
def slow_copy(synth_corpus_dir, synth_mel_dir):
    """The synthetic corpus at speed 0.8 (4/5: 5/4 as long), 40 log-mel bands like synth_mel_dir,
    beside it: "{data.dir}-sp0.8"."""
    out = Path(f"{synth_mel_dir}-sp0.8")
    if not (out / "prepare.json").is_file():
        prepare(synth_corpus_dir, out, jobs=2, progress=False, features=MEL, speed=0.8)
    return out


def test_change_speed_scales_pitch_and_length():
    t = np.arange(16000) / 16000.0
    wave = np.sin(2 * np.pi * 400.0 * t).astype(np.float32)
    for speed, f0 in ((0.8, 320.0), (1.25, 500.0)):
        out = change_speed(wave, speed)
        assert abs(out.size - 16000 / speed) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(out * np.hanning(out.size)))) * 16000 / out.size
        assert peak == pytest.approx(f0, abs=2.0)
    np.testing.assert_array_equal(change_speed(wave, 1.0), wave)
    with pytest.raises(ValueError, match="speed must be > 0"):
        change_speed(wave, 0.0)


def test_a_speed_store_holds_the_resampled_audios_frames(synth_mel_dir, slow_copy):
    target, copy = FeatureStore(synth_mel_dir), FeatureStore(slow_copy)
    assert copy.utt_ids == target.utt_ids and copy.speakers == target.speakers
    np.testing.assert_array_equal(copy.labels, target.labels)
    assert copy.info["speed"] == 0.8 and "speed" not in target.info and copy.feature_params == target.feature_params
    for i in (0, 57, len(copy) - 1):
        wave = load_audio(copy.rows[i]["path"])
        want = compute_features(resample_poly(wave, 5, 4).astype(np.float32), MEL).astype(np.float16)
        np.testing.assert_array_equal(np.asarray(copy[i]), want)
        assert copy.lengths[i] > target.lengths[i]
    with pytest.raises(ValueError, match="--speed 3"):
        prepare(slow_copy, slow_copy.parent / "never", features=MEL, speed=3)


def test_copies_join_only_the_training_utterances(synth_mel_dir, slow_copy):
    target = FeatureStore(synth_mel_dir)
    copies = load_copies(target, ["{data.dir}-sp0.8"])  # a preset's way of naming slow_copy
    assert [c.data_dir for c in copies] == [slow_copy]
    # {data.dir} is a path: a trailing separator is not kept before the suffix
    assert copy_dirs(["{data.dir}-sp0.9", "x"], "data/x/") == [str(Path("data/x-sp0.9")), "x"]
    assert copy_dirs(["{data.dir}-sp0.9"], f"{synth_mel_dir}/") == [f"{synth_mel_dir}-sp0.9"]
    fold = make_folds_for(target, tiny_stage(data={"dir": str(synth_mel_dir)}).data)[0]
    combined, rows = with_copies(target, fold, copies)
    n = len(target)
    assert combined.n_target == n and combined.labeled
    np.testing.assert_array_equal(rows.val, fold.val)
    np.testing.assert_array_equal(rows.test, fold.test)
    added = rows.train[rows.train >= n]
    assert sorted(combined.utt_ids[i] for i in added) == sorted(f"{slow_copy.name}:{target.utt_ids[i]}" for i in fold.train)
    held_out = {target.speakers[i] for i in np.concatenate([fold.val, fold.test])}
    assert not {combined.speakers[i].split(":", 1)[1] for i in added} & held_out
    copy = FeatureStore(slow_copy)
    for i in added[:5]:
        j = copy.utt_ids.index(combined.utt_ids[i].split(":", 1)[1])
        assert combined.labels[i] == copy.labels[j] and combined.speakers[i] == f"{slow_copy.name}:{copy.speakers[j]}"
        np.testing.assert_array_equal(combined[i], copy[j])
    # speaker normalisation: a copy is standardised with its speaker's statistics in the copy store
    normalised = model_inputs(combined, "speaker")
    i = int(added[0])
    j = copy.utt_ids.index(combined.utt_ids[i].split(":", 1)[1])
    mean, std = copy.speaker_band_stats[copy.speakers[j]]
    np.testing.assert_allclose(np.asarray(normalised[i], np.float32),
                               ((np.asarray(copy[j], np.float32) - mean) / std).astype(np.float16), rtol=1e-3, atol=1e-3)
    k = int(fold.train[0])
    mean, std = target.speaker_band_stats[target.speakers[k]]
    np.testing.assert_allclose(np.asarray(normalised[k], np.float32),
                               ((np.asarray(target[k], np.float32) - mean) / std).astype(np.float16), rtol=1e-3, atol=1e-3)


def test_copies_that_are_not_the_same_recordings_are_refused(synth_corpus_dir, synth_mel_dir, slow_copy, tmp_path):
    target = FeatureStore(synth_mel_dir)
    with pytest.raises(ValueError, match="is data.dir itself"):
        load_copies(target, [str(synth_mel_dir)])
    with pytest.raises(ValueError, match=r"-sp0.7 is not a prepared store; prepare it with: ser-cl prepare \S+ -o "
                                         r"\S+-sp0.7 --features mel --n-mels 40 --f-min 0 --f-max 8000 --speed 0.7$"):
        load_copies(target, ["{data.dir}-sp0.7"])
    fewer = tmp_path / "fewer"
    prepare(synth_corpus_dir, fewer, jobs=1, progress=False, features=MEL, exclude_speakers="Ses01F")
    with pytest.raises(ValueError, match=r"utterance Ses01F\S* is not in data.dir"):
        load_copies(FeatureStore(fewer), [str(slow_copy)])
    other_classes = tmp_path / "three"
    prepare(synth_corpus_dir, other_classes, jobs=1, progress=False, features=MEL, speed=1.2,
            classes="neu=neutral,sad=sad,ang=angry")
    with pytest.raises(ValueError, match="has classes"):
        load_copies(target, [str(other_classes)])
    # a copy whose label differs from the target's, and a store prepared without --speed
    relabeled = tmp_path / "relabeled"
    shutil.copytree(slow_copy, relabeled)
    manifest = (relabeled / "manifest.csv").read_text().splitlines()
    header = manifest[0].split(",")
    first = manifest[1].split(",")
    label_col = header.index("label")
    old_label = first[label_col]
    first[label_col] = next(c for c in target.classes if c != old_label)
    (relabeled / "manifest.csv").write_text("\n".join([manifest[0], ",".join(first)] + manifest[2:]) + "\n")
    with pytest.raises(ValueError, match=rf"relabeled: utterance {first[0]} has label '{first[label_col]}', "
                                         rf"in data.dir '{old_label}'; prepare both from the same labels$"):
        load_copies(target, [str(relabeled)])
    unsped = tmp_path / "unsped"
    shutil.copytree(slow_copy, unsped)
    info = json.loads((unsped / "prepare.json").read_text())
    del info["speed"]
    (unsped / "prepare.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"unsped/prepare.json records no speed: a training copy is data.dir's recordings"):
        load_copies(target, [str(unsped)])
    from ser_cl.experiment import Variant
    from ser_cl.train.run import run_variant

    cfg = tiny_stage(runs_dir=str(tmp_path / "runs"), data={"dir": str(synth_mel_dir), "train_copies": ["{data.dir}-sp0.7"]})
    with pytest.raises(ConfigError, match="-sp0.7 is not a prepared store"):
        run_variant(Variant(cfg, "train", {}), folds=[1], device_spec="cpu", progress=False)
    assert not (tmp_path / "runs").exists()  # refused before run.json or a fold folder is written
    with pytest.raises(ConfigError, match="data.train_copies is for train and finetune"):
        tiny_stage(stage="pretrain", loss={"name": "selfsup_ntxent"}, data={"train_copies": [str(slow_copy)]})


def test_a_fold_trains_on_its_copies_and_records_them(synth_mel_dir, slow_copy, tmp_path):
    """With speaker normalisation: the test speakers are standardised with their own statistics
    from the target store (numpy reference), and predict's fallback "typical training speaker" is
    made of the fold's real training speakers only, not the copies' pseudo-speakers."""
    from sklearn.metrics import balanced_accuracy_score

    from conftest import one_at_a_time_probabilities
    from ser_cl.experiment import Variant
    from ser_cl.train.checkpoint import load_checkpoint
    from ser_cl.train.run import run_variant

    cfg = tiny_stage(runs_dir=str(tmp_path), experiment="copies", optim={"epochs": 1}, model={"input_norm": "speaker"},
                     data={"dir": str(synth_mel_dir), "train_copies": [str(slow_copy)]})
    out = run_variant(Variant(cfg, "train", {}), folds=[1], device_spec="cpu", progress=False)
    split = json.loads((out / "fold-01" / "split.json").read_text())
    assert len(split["train_copies"]) == len(split["train"])
    assert sorted(c.split(":", 1)[1] for c in split["train_copies"]) == sorted(split["train"])
    metrics = json.loads((out / "fold-01" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and 0 <= metrics["test"]["ua"] <= 1
    target = FeatureStore(synth_mel_dir)
    rows = [target.utt_ids.index(u) for u in split["test"]]
    preds = one_at_a_time_probabilities(out / "fold-01" / "best.pt", target, rows).argmax(1)
    assert metrics["test"]["ua"] == pytest.approx(balanced_accuracy_score(target.labels[rows], preds))
    # the fallback: mean of the real training speakers' means, root mean of their variances
    speakers = sorted({target.speakers[target.utt_ids.index(u)] for u in split["train"]})
    assert split["train_speakers"] == speakers
    stats = [target.speaker_band_stats[s] for s in speakers]
    fallback = load_checkpoint(out / "fold-01" / "best.pt")["speaker_fallback"]
    assert fallback["speakers"] == len(speakers)
    np.testing.assert_allclose(fallback["mean"].numpy(), np.mean([m for m, _ in stats], axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fallback["std"].numpy(), np.sqrt(np.mean([np.square(s.astype(np.float64)) for _, s in stats],
                                                                        axis=0)), rtol=1e-5, atol=1e-5)
