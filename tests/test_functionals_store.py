"""The openSMILE functionals front-end (``prepare --features functionals``) and the
``cpu-functionals`` preset that trains on it.

References: ``opensmile.Smile.process_file`` on each WAV (the stored frames must equal it), numpy
for the speaker statistics, and the float32 range beyond float16's (ComParE values reach ~1e12).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ser_cl.cli import app

opensmile = pytest.importorskip("opensmile")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def egemaps_store(tiny_emodb_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("egemaps") / "store"
    res = CliRunner().invoke(app, ["prepare", str(tiny_emodb_raw), "--out", str(out), "--features", "functionals",
                                   "--feature-set", "eGeMAPSv02", "--classes", "angry,sad,neutral", "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    return out


def test_the_store_holds_each_files_functionals_as_opensmile_computes_them(egemaps_store):
    from ser_cl.data.stores.store import FeatureStore

    store = FeatureStore(egemaps_store)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    assert store.features.dtype == np.float32 and store.n_freq == 88 and len(store) == 36
    assert (store.lengths == 1).all()
    for i, row in enumerate(store.rows):
        expected = smile.process_file(row["path"]).to_numpy().reshape(-1).astype(np.float32)
        np.testing.assert_allclose(np.asarray(store[i])[0], expected, rtol=1e-6, atol=1e-6)
    info = json.loads((egemaps_store / "prepare.json").read_text())
    assert info["features"]["name"] == "functionals" and info["features"]["feature_set"] == "eGeMAPSv02"


def test_speaker_statistics_are_each_speakers_mean_and_std_over_its_utterances(egemaps_store):
    from ser_cl.data.stores.normalize import speaker_normalised
    from ser_cl.data.stores.store import FeatureStore

    store = FeatureStore(egemaps_store)
    X = np.asarray(store.features, dtype=np.float64)
    normed = speaker_normalised(store)
    assert normed.features.dtype == np.float32
    for speaker in set(store.speakers):
        rows = np.asarray(store.speakers) == speaker
        mean, std = X[rows].mean(0), np.maximum(X[rows].std(0), 1e-5)
        np.testing.assert_allclose(normed.features[rows], (X[rows] - mean) / std, rtol=1e-4, atol=1e-4)


def test_values_beyond_float16_survive_the_cache_and_the_loader(tmp_path):
    from ser_cl.data.stores.feature_cache import cache_entry

    big = np.array([[1.0e12, -3.5e9, 0.25]], dtype=np.float32)  # float16 would make these inf
    index, n, reason = cache_entry(0, str(tmp_path / "k"), 16000, big, np.dtype(np.float32))
    assert reason is None and n == 16000
    np.testing.assert_array_equal(np.load(tmp_path / "k_16000.npy"), big)
    _, _, refused = cache_entry(1, str(tmp_path / "h"), 16000, big)  # the float16 default refuses them
    assert refused is not None and "not finite" in refused


def test_the_loader_gives_the_stores_float32_values(egemaps_store):
    from ser_cl.data.batches.loader import BatchLoader, BatchPlan
    from ser_cl.data.stores.store import FeatureStore

    store = FeatureStore(egemaps_store)
    rows = np.array([3, 0, 7])
    plan = BatchPlan(rows=rows, starts=np.zeros(3, dtype=np.int64), lengths=np.ones(3, dtype=np.int64), T=1)
    x, lengths, _, _ = BatchLoader(store, torch.device("cpu"))._gather_host(plan)
    np.testing.assert_array_equal(x.numpy()[:, 0], np.asarray(store.features)[rows])


def test_feature_params_of_the_functionals_front_end_refuse_other_flags():
    from ser_cl.data.frontends.features import feature_params, frames_for

    params = feature_params("functionals")
    assert params["feature_set"] == "ComParE_2016" and params["n_freq"] == 6373 and params["dtype"] == "float32"
    assert frames_for(params, 16000) == 1
    with pytest.raises(ValueError, match="n_mels"):
        feature_params("functionals", n_mels=40)
    with pytest.raises(ValueError, match="feature_set"):
        feature_params("mel", feature_set="eGeMAPSv02")
    with pytest.raises(ValueError, match="choose one of"):
        feature_params("functionals", feature_set="IS09")


@pytest.fixture(scope="module")
def trained_fold(egemaps_store, tiny_emodb_raw, tmp_path_factory) -> Path:
    """Fold 1 of the cpu-functionals preset on the eGeMAPS store (3 epochs), its fold dir."""
    runs = tmp_path_factory.mktemp("func-runs")
    args = ["run", str(ROOT / "experiments/ce_baseline.toml"), "--preset", "cpu-functionals", "--fold", "1",
            "--set", f"data.dir={egemaps_store}", "--set", f"runs_dir={runs}", "--set", "optim.epochs=3",
            "--set", "data.protocol=speaker", "--no-report"]
    mismatch = CliRunner().invoke(app, args)  # the preset was chosen on ComParE, the store is eGeMAPS
    assert mismatch.exit_code == 2
    assert "--features functionals --feature-set ComParE_2016" in mismatch.output, mismatch.output
    no_copies = CliRunner().invoke(app, args + ["--force"])  # its CE also trains on copies at speeds 0.9, 1.1
    assert no_copies.exit_code == 2
    assert f"{egemaps_store}-sp0.9 is not a prepared store; prepare it with: ser-cl prepare" in no_copies.output
    assert "--features functionals --feature-set eGeMAPSv02 --speed 0.9" in no_copies.output, no_copies.output
    for speed in ("0.9", "1.1"):
        prep = CliRunner().invoke(app, ["prepare", str(tiny_emodb_raw), "--out", f"{egemaps_store}-sp{speed}",
                                        "--features", "functionals", "--feature-set", "eGeMAPSv02", "--classes",
                                        "angry,sad,neutral", "--speed", speed, "-j", "1", "-q"])
        assert prep.exit_code == 0, prep.output
    res = CliRunner().invoke(app, args + ["--force"])
    assert res.exit_code == 0, res.output
    (metrics,) = runs.rglob("metrics.json")
    split = json.loads((metrics.parent / "split.json").read_text())
    assert len(split["train_copies"]) == 2 * len(split["train"])
    return metrics.parent


def test_the_preset_trains_on_a_functionals_store_and_names_the_store_it_needs(trained_fold):
    result = json.loads((trained_fold / "metrics.json").read_text())
    assert result["status"] == "complete" and 0.0 <= result["test"]["ua"] <= 1.0


def test_predict_standardises_a_files_functionals_with_the_enrolled_recordings(trained_fold, tiny_emodb_raw):
    from ser_cl.predict import predict_files
    from ser_cl.train.checkpoint import load_model

    target, *enrol = sorted(tiny_emodb_raw.glob("08*.wav"))
    (result,) = predict_files(trained_fold / "best.pt", [target], enrol=enrol)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    E = np.stack([smile.process_file(str(p)).to_numpy().reshape(-1) for p in enrol]).astype(np.float64)
    x = smile.process_file(str(target)).to_numpy().reshape(-1)
    z = (x - E.mean(0)) / np.maximum(E.std(0), 1e-5)
    model, ckpt = load_model(trained_fold / "best.pt", torch.device("cpu"))
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor(z, dtype=torch.float32)[None, None], torch.tensor([1])), 1)[0]
    assert result["normalisation"].startswith("enrol")
    expected = {c: round(float(p), 4) for c, p in zip(ckpt["classes"], probs)}
    for c, p in expected.items():
        assert result["probabilities"][c] == pytest.approx(p, abs=2e-4)


def test_input_dropout_drops_input_values_only_while_training():
    from ser_cl.models import ModelConfig, SERModel

    cfg = ModelConfig.preset("functionals", n_freq=50)
    model = SERModel(cfg, 3)
    x, lengths = torch.randn(4, 1, 50), torch.ones(4, dtype=torch.int64)
    model.eval()
    assert torch.equal(model.embed(x, lengths), model.embed(x, lengths))
    seen = []
    model.project_in.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    model.train()
    model.embed(x, lengths)
    zeros = (seen[-1] == 0).float().mean().item()
    assert 0.1 < zeros < 0.3  # 20% of 200 values dropped
    kept = seen[-1] != 0
    torch.testing.assert_close(seen[-1][kept], (x / 0.8)[kept])
    with pytest.raises(ValueError, match="input_dropout"):
        ModelConfig(input_dropout=1.0)


def test_the_mlp_has_honest_names_for_its_width_and_dropout():
    """model.mlp_hidden / model.mlp_dropout set the functionals MLP's hidden width and dropout
    (held as 2 x gru_hidden and transformer_dropout, so older configs and checkpoints read the same);
    another preset refuses them, and a config without them keeps its fingerprint."""
    from ser_cl.config import stage_from_dict
    from ser_cl.models import SERModel
    from ser_cl.train.build import model_config_for
    from ser_cl.train.fingerprint import config_fingerprint

    def tiny_stage(model=None):  # [model] as given, nothing else set
        return stage_from_dict({"stage": "train", **({"model": model} if model else {})}, "test")

    cfg = tiny_stage(model={"preset": "functionals", "mlp_hidden": 64, "mlp_dropout": 0.3})
    model = SERModel(model_config_for(cfg, 10), 4)
    linear, norm, _, dropout = model.project_in
    assert (linear.in_features, linear.out_features, dropout.p) == (10, 64, 0.3)
    assert norm.normalized_shape == (64,)
    # the same model as the old names gave it: hidden width 64 was model.gru_hidden = 32
    old = tiny_stage(model={"preset": "functionals", "gru_hidden": 32, "transformer_dropout": 0.3})
    assert vars(model_config_for(old, 10)) == vars(model_config_for(cfg, 10))
    default = model_config_for(tiny_stage(model={"preset": "functionals"}), 10)
    assert 2 * default.gru_hidden == 256 and default.transformer_dropout == 0.5  # docs/functionals.md
    for model_table, message in (({"preset": "small", "mlp_hidden": 64}, "model.mlp_hidden is the functionals MLP's"),
                                 ({"preset": "functionals", "mlp_hidden": 64, "gru_hidden": 32}, "set the same value"),
                                 ({"preset": "functionals", "mlp_hidden": 63}, "must be an even number")):
        with pytest.raises(ValueError, match=message):
            model_config_for(tiny_stage(model=model_table), 10)
    assert not {k for k in config_fingerprint(tiny_stage()) if k.startswith("model.mlp")}
    assert config_fingerprint(cfg)["model.mlp_hidden"] == 64
