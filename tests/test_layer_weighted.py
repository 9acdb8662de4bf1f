"""Model preset "layer_weighted" and --preset cpu-upstream on a tiny synthetic multi-layer store:
the forward against a numpy computation from the raw frames, and one epoch of the preset."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

LAYERS, HIDDEN = 3, 5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def layer_store(synth_mel_dir, tmp_path_factory):
    """The synthetic corpus' utterances with random frames of 3 layers x 5 values, as prepare
    --features ssl --layers all lays them out ([T, L * D]); no prepare statistics."""
    data = tmp_path_factory.mktemp("layers") / "store"
    shutil.copytree(synth_mel_dir, data, ignore=shutil.ignore_patterns("cache", "speaker_stats.npz"))
    offsets = np.load(data / "offsets.npy")
    rng = np.random.default_rng(7)
    scale = rng.uniform(0.5, 3.0, LAYERS * HIDDEN)  # bands of unequal spread, as hidden states are
    frames = (rng.normal(size=(int(offsets[-1]), LAYERS * HIDDEN)) * scale + 1.0).astype(np.float16)
    np.save(data / "features.npy", frames)
    # prepare's per-speaker statistics over frames: pooled vectors must not be standardised with them
    import csv

    with open(data / "manifest.csv", newline="") as f:
        speakers = np.array([row["speaker"] for row in csv.DictReader(f)])
    per_frame = np.repeat(speakers, np.diff(offsets))
    names = sorted(set(speakers))
    np.savez(data / "speaker_stats.npz", speakers=np.array(names),
             mean=np.stack([frames[per_frame == s].astype(np.float64).mean(0) for s in names]).astype(np.float32),
             std=np.stack([frames[per_frame == s].astype(np.float64).std(0) for s in names]).astype(np.float32))
    info = json.loads((data / "prepare.json").read_text())
    info["features"] = {"name": "ssl", "n_freq": LAYERS * HIDDEN, "layers": list(range(LAYERS)),
                        "hidden_size": HIDDEN}
    (data / "prepare.json").write_text(json.dumps(info))
    return data


def _gelu(x):
    from math import erf, sqrt

    return x * 0.5 * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def test_layer_weighted_forward_matches_a_numpy_reference(layer_store):
    import torch

    from ser_cl.config import stage_from_dict
    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.normalize import model_inputs
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.train.build import build_model

    store = FeatureStore(layer_store)
    cfg = stage_from_dict({"stage": "train", "model": {"preset": "layer_weighted", "mlp_hidden": 8}}, "test")
    model, model_cfg = build_model(cfg, store, make_folds(store, "speaker")[0], None)
    assert (model_cfg.n_layers, model_cfg.n_freq) == (LAYERS, 2 * LAYERS * HIDDEN)
    with torch.no_grad():
        model.project_in.layer_logits.copy_(torch.tensor([0.3, -1.0, 0.8]))
    model.eval()
    inputs = model_inputs(store, model_cfg.input_norm)
    rows = list(range(len(store)))
    x = torch.tensor(np.stack([np.asarray(inputs[i], dtype=np.float32) for i in rows]))
    with torch.no_grad():
        got = model(x, torch.ones(len(rows), dtype=torch.long)).numpy()

    # reference: pool each layer's frames, standardise per speaker, weight the layers, the MLP
    pooled = np.stack([np.concatenate([f.mean(0), f.std(0)], axis=-1) for f in
                       (np.asarray(store[i], dtype=np.float64).reshape(-1, LAYERS, HIDDEN) for i in rows)])
    speakers = np.array(store.speakers)
    for s in np.unique(speakers):
        m = speakers == s
        pooled[m] = (pooled[m] - pooled[m].mean(0)) / pooled[m].std(0)
    w = np.exp([0.3, -1.0, 0.8])
    mixed = (w[None, :, None] / w.sum() * pooled).sum(1)  # [N, 2D]
    state = {k: v.double().numpy() for k, v in model.state_dict().items()}
    hid = mixed @ state["project_in.mlp.0.weight"].T + state["project_in.mlp.0.bias"]
    hid = (hid - hid.mean(1, keepdims=True)) / np.sqrt(hid.var(1, keepdims=True) + 1e-5)
    hid = _gelu(hid * state["project_in.mlp.1.weight"] + state["project_in.mlp.1.bias"])
    want = hid @ state["classifier.weight"].T + state["classifier.bias"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_cpu_upstream_preset_trains_ce_supcon_for_an_epoch(layer_store, tmp_path, monkeypatch):
    import torch

    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.experiment import load_experiment
    from ser_cl.train.checkpoint import load_model
    from ser_cl.train.loop import train_fold

    monkeypatch.chdir(REPO)
    (cfg,) = load_experiment(REPO / "experiments" / "ce_supcon.toml", preset="cpu-upstream",
                             overrides=[f"data.dir={layer_store}", "loss.supcon_weight=0.5", "optim.epochs=1"])
    assert not cfg.sweep and cfg.model.preset == "layer_weighted" and cfg.augment.multiview
    assert (cfg.loss.supcon_weight, cfg.optim.lr, cfg.data.val_speakers) == (0.5, 1e-3, 0)
    store = FeatureStore(layer_store)
    fold = make_folds(store, "speaker", val_speakers=0)[0]
    metrics = train_fold(cfg, store, fold, tmp_path, torch.device("cpu"), progress=False)
    assert metrics["epochs_run"] == 1 and metrics["val"] is None and 0.0 <= metrics["test"]["ua"] <= 1.0
    model, _ = load_model(tmp_path / "best.pt", "cpu")
    weights = model.project_in.layer_weights().detach().numpy()
    assert weights.shape == (LAYERS,) and not np.allclose(weights, 1 / LAYERS)  # the layers' weights learned
    # predict computes frames, not pooled speaker-standardised vectors: a one-line refusal, not a shape error
    from ser_cl.predict import predict_files

    with pytest.raises(ValueError, match="pooled_speaker"):
        predict_files(tmp_path / "best.pt", [])


def test_cpu_upstream_declares_an_upstream_store_and_names_the_prepare_command(layer_store, synth_mel_dir):
    from ser_cl.pipeline import front_end_mismatch, preset_front_end

    declared = preset_front_end("cpu-upstream")
    assert declared == {"features": "ssl"}
    assert front_end_mismatch("cpu-upstream", declared, layer_store) is None
    line = front_end_mismatch("cpu-upstream", declared, synth_mel_dir)
    assert "log-mel" in line and "--features ssl --upstream DIR --layers all" in line and "--force" in line
