"""The recipes that decide the thesis: fine-tuning phases, what the head sees, checkpoint
selection across schedules, non-finite validation values, config-safe resume, and the loss
modules that train being the registry's."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ser_cl.config import ConfigError, LossConfig
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.losses import SupConLoss, TripletLoss, build_loss
from ser_cl.models import SERModel
from ser_cl.train import loop
from ser_cl.train.checkpoint import load_checkpoint
from ser_cl.train.build import model_config_for
from ser_cl.train.loop import evaluate, train_fold
from ser_cl.train.objective import Objective, validation_objective
from ser_cl.train.fingerprint import check_fold_config, config_fingerprint

from conftest import tiny_stage as stage  # the tests folder is on sys.path

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def store(synth_mel_dir):
    return FeatureStore(synth_mel_dir)


@pytest.fixture(scope="module")
def pretrained(store, tmp_path_factory):
    """A 1-epoch SupCon encoder of fold 1 (L2-normalised outputs, as pretraining makes them)."""
    root = tmp_path_factory.mktemp("pre")
    fold = make_folds(store, "session10")[0]
    train_fold(stage(stage="pretrain", loss={"name": "supcon"}, optim={"epochs": 1}), store, fold, root, CPU,
               progress=False)
    return root / "best.pt"


def _history(fold_dir):
    return [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]


def test_finetune_unfreezes_at_full_lr_after_a_flat_frozen_phase(store, pretrained, tmp_path, monkeypatch):
    """A flat validation UA during the frozen epochs must not decay the lr the encoder starts with."""
    real = loop.evaluate

    def flat(model, store_, indices, cfg, device, objective=None, loader=None):
        out = real(model, store_, indices, cfg, device, objective, loader)
        return {**out, "ua": 0.5} if objective is not None else out

    monkeypatch.setattr(loop, "evaluate", flat)
    cfg = stage(stage="finetune", finetune={"from": str(pretrained.parent), "freeze_epochs": 3, "head_lr": 1e-2},
                optim={"epochs": 4, "lr": 1e-4, "patience": 0})
    fold = make_folds(store, "session10")[0]
    train_fold(cfg, store, fold, tmp_path, CPU, source_checkpoint=pretrained, progress=False)
    hist = _history(tmp_path)
    assert [h["phase"] for h in hist] == ["frozen"] * 3 + ["all"]
    assert [h["head_lr"] for h in hist[:3]] == pytest.approx([1e-2, 1e-2, 1e-3])  # patience 0: decays
    assert hist[3]["lr"] == pytest.approx(1e-4) and hist[3]["head_lr"] == pytest.approx(1e-2)  # fresh phase


def test_finetuned_head_sees_raw_embeddings(store, pretrained, tmp_path):
    assert load_checkpoint(pretrained)["model_config"]["normalize"] is True
    cfg = stage(stage="finetune", finetune={"from": str(pretrained.parent), "freeze_epochs": 1}, optim={"epochs": 1})
    fold = make_folds(store, "session10")[0]
    train_fold(cfg, store, fold, tmp_path, CPU, source_checkpoint=pretrained, progress=False)
    assert load_checkpoint(tmp_path / "best.pt")["model_config"]["normalize"] is False


def test_freeze_min_steps_stretches_the_frozen_phase_on_small_corpora():
    cfg = stage(stage="finetune", finetune={"from": "x", "freeze_epochs": 2, "freeze_min_steps": 50},
                optim={"epochs": 20})
    phases = loop.phases_of(cfg, steps_per_epoch=8)
    assert [(p.name, p.start, p.end) for p in phases] == [("frozen", 0, 7), ("all", 7, 20)]


def test_a_step_budget_caps_the_epochs_of_a_larger_corpus(store, tmp_path):
    cfg = stage(optim={"epochs": 30, "max_steps": 450})
    assert [loop.epochs_of(cfg, s) for s in (14, 15, 16, 42)] == [30, 30, 29, 11]  # ceil(450 / s), at most 30
    ft = stage(stage="finetune", finetune={"from": "x", "freeze_epochs": 3}, optim={"epochs": 28, "max_steps": 84})
    assert [(p.name, p.start, p.end) for p in loop.phases_of(ft, steps_per_epoch=12)] == [("frozen", 0, 3), ("all", 3, 7)]
    fold = make_folds(store, "session10")[0]  # 128 training utterances, batch 16: 8 steps an epoch
    metrics = train_fold(stage(optim={"epochs": 5, "max_steps": 20}), store, fold, tmp_path, CPU, progress=False)
    assert metrics["epochs_run"] == 3  # ceil(20 / 8)


def test_validation_of_a_mining_schedule_means_the_same_in_both_phases(store):
    """semi-hard then hard: the monitored validation loss must not jump at the switch, or the
    hard phase (whose triplets are harder) could never give best.pt."""
    cfg = stage(stage="pretrain", loss={"name": "triplet", "mining": "semihard-hard", "hard_fraction": 0.5},
                optim={"epochs": 4})
    fold = make_folds(store, "session10")[0]
    torch.manual_seed(0)
    model = SERModel(model_config_for(cfg, store.n_freq), len(store.classes))
    objective = validation_objective(cfg.loss, cfg.has_head)
    values = []
    for epoch in (0, 3):  # semi-hard, then hard
        objective.set_epoch(epoch, 4)
        values.append(evaluate(model, store, fold.val, cfg, CPU, objective)["loss"])
    assert values[0] == pytest.approx(values[1], rel=1e-6)
    # while the training objective does switch (so the equality above is not vacuous)
    train_obj = Objective(cfg.loss, cfg.has_head)
    train_vals = []
    for epoch in (0, 3):
        train_obj.set_epoch(epoch, 4)
        train_vals.append(evaluate(model, store, fold.val, cfg, CPU, train_obj)["loss"])
    assert train_vals[0] != pytest.approx(train_vals[1], rel=1e-3)


def test_a_nan_validation_value_does_not_pin_best_pt(store, tmp_path, monkeypatch):
    real = loop.evaluate
    values = iter([float("nan"), 0.3, 0.5])

    def scripted(model, store_, indices, cfg, device, objective=None, loader=None):
        out = real(model, store_, indices, cfg, device, objective, loader)
        return {**out, "ua": next(values)} if objective is not None else out

    monkeypatch.setattr(loop, "evaluate", scripted)
    fold = make_folds(store, "session10")[0]
    metrics = train_fold(stage(optim={"epochs": 3}), store, fold, tmp_path, CPU, progress=False)
    assert metrics["best_epoch"] == 3 and metrics["best_value"] == 0.5
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 2


def test_a_fold_trained_under_another_config_is_refused_or_restarted(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    cfg = stage(optim={"epochs": 1})
    fp = config_fingerprint(cfg)
    check_fold_config(tmp_path, fp, restart=False)
    (tmp_path / "fingerprint.json").write_text(json.dumps(fp))
    train_fold(cfg, store, fold, tmp_path, CPU, progress=False)
    check_fold_config(tmp_path, config_fingerprint(stage(optim={"epochs": 1}, device="cpu")), restart=False)  # same
    changed = stage(optim={"epochs": 1, "lr": 1e-4})
    with pytest.raises(ConfigError, match=r"optim\.lr: 0\.003 -> 0\.0001.*--restart"):
        check_fold_config(tmp_path, config_fingerprint(changed), restart=False)
    (tmp_path / "lock.json").write_text("{}")  # the lock of the run that clears it (ser_cl.train.fold_lock)
    check_fold_config(tmp_path, config_fingerprint(changed), restart=True)
    assert [p.name for p in tmp_path.iterdir()] == ["lock.json"]  # everything else cleared


def test_a_fold_from_before_a_new_key_resumes_while_the_key_keeps_its_default(tmp_path):
    cfg = stage(optim={"epochs": 1})
    older = {k: v for k, v in config_fingerprint(cfg).items() if not k.startswith("data.pool")}
    (tmp_path / "fingerprint.json").write_text(json.dumps(older))
    check_fold_config(tmp_path, config_fingerprint(cfg), restart=False)  # data.pool* absent = default
    pooled = stage(optim={"epochs": 1}, data={"pool": ["data/other"]})
    with pytest.raises(ConfigError, match=r"data\.pool: None -> \['data/other'\]"):
        check_fold_config(tmp_path, config_fingerprint(pooled), restart=False)


def test_rerun_with_changed_set_is_refused_from_the_cli(synth_mel_dir, tmp_path):
    from typer.testing import CliRunner

    from ser_cl.cli import app

    base = ["train", "experiments/ce_baseline.toml", "--fold", "1", "--set", f'data.dir="{synth_mel_dir}"', "--set", "model.freq_kernels=scaled",
            "--set", f'runs_dir="{tmp_path}"', "--set", "optim.epochs=1", "--set", "model.preset=small",
            "--set", "model.conv_channels=4", "--set", "model.gru_hidden=8", "--set", "model.n_heads=2"]
    runner = CliRunner()
    assert runner.invoke(app, base).exit_code == 0
    res = runner.invoke(app, base + ["--set", "optim.lr=0.0001"])
    assert res.exit_code == 2 and "optim.lr: 0.001 -> 0.0001" in res.output and "--restart" in res.output
    res = runner.invoke(app, base + ["--set", "optim.lr=0.0001", "--restart"])
    assert res.exit_code == 0, res.output
    assert "0.0001" in (tmp_path / "ce_baseline/train/fold-01/config.toml").read_text()


def test_the_training_objective_is_built_from_the_loss_registry(monkeypatch):
    obj = Objective(LossConfig(name="supcon", tau=0.2), with_head=False)
    assert isinstance(obj.terms["supcon"], SupConLoss) and obj.terms["supcon"].tau == 0.2
    trip = Objective(LossConfig(name="triplet", margin=0.3, mining="semihard-hard"), with_head=False)
    assert isinstance(trip.terms["triplet"], TripletLoss) and trip.terms["triplet"].margin == 0.3
    combined = Objective(LossConfig(name="ce", supcon_weight=0.5, selfsup_weight=0.1), with_head=True)
    assert set(combined.terms) == {"ce", "supcon", "selfsup_ntxent"}
    # a module registered under a name is what trains under that name
    calls = []

    class Spy(SupConLoss):
        def forward(self, z, labels=None, shard_sizes=None):
            calls.append(z.shape)
            return super().forward(z, labels)

    from ser_cl import losses

    monkeypatch.setitem(losses.LOSS_CLASSES, "supcon", Spy)
    model = SERModel(model_config_for(stage(stage="pretrain", loss={"name": "supcon"}), 257), 4)
    spied = Objective(LossConfig(name="supcon"), with_head=False)
    x = torch.randn(4, 20, 257)
    out = spied(model, x, np.array([20, 18, 15, 10]), torch.tensor([0, 0, 1, 1]))
    assert calls == [(4, model.embed_dim)] and math.isfinite(float(out.loss.detach()))
    assert type(build_loss("supcon")) is Spy


def test_fitted_head_is_sklearns_logistic_regression_on_standardised_embeddings():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from ser_cl.train.head_fit import fit_linear_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    X = rng.normal(size=(300, 12)) * rng.uniform(0.1, 5, 12) + rng.normal(size=(4, 12))[y] * 2 + 7
    W, b = fit_linear_head(X, y, 4)
    scaler = StandardScaler().fit(X)
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10000).fit(scaler.transform(X), y)
    ours = X @ W.double().numpy().T + b.double().numpy()
    theirs = ref.decision_function(scaler.transform(X))
    # the same convex problem: the same logits up to a per-sample constant (softmax invariance)
    np.testing.assert_allclose(ours - ours.mean(1, keepdims=True), theirs - theirs.mean(1, keepdims=True),
                               atol=2e-3, rtol=1e-3)


def test_finetuning_starts_from_the_fitted_head(store, pretrained, tmp_path):
    """head_init = "fit": after the frozen epochs the head is at least as good on validation as
    a randomly initialised one trained for the same steps (on this tiny corpus, far better)."""
    fold = make_folds(store, "session10")[0]
    uas = {}
    for init in ("fit", "random"):
        cfg = stage(stage="finetune", finetune={"from": str(pretrained.parent), "freeze_epochs": 1, "head_init": init},
                    optim={"epochs": 1, "lr": 1e-4})
        uas[init] = train_fold(cfg, store, fold, tmp_path / init, CPU, source_checkpoint=pretrained,
                               progress=False)["val"]["ua"]
    assert uas["fit"] >= uas["random"] and uas["fit"] > 0.4, uas


def test_a_finetune_stage_cannot_silently_change_the_pretrained_architecture(store, pretrained, tmp_path):
    """[model] keys come from the checkpoint when fine-tuning: a differing one is refused, naming it;
    gru_impl (exact, speed only) may differ and is applied."""
    fold = make_folds(store, "session10")[0]
    ft = {"from": str(pretrained.parent), "freeze_epochs": 1}
    with pytest.raises(ValueError, match=r"model\.pooling = 'attention'.*has 'mean'"):
        train_fold(stage(stage="finetune", finetune=ft, model={"pooling": "attention"}, optim={"epochs": 1}),
                   store, fold, tmp_path / "a", CPU, source_checkpoint=pretrained, progress=False)
    assert load_checkpoint(pretrained)["model_config"]["gru_impl"] != "padded"
    train_fold(stage(stage="finetune", finetune=ft, model={"gru_impl": "padded", "pooling": "mean"},
                     optim={"epochs": 1}), store, fold, tmp_path / "b", CPU, source_checkpoint=pretrained,
               progress=False)
    assert load_checkpoint(tmp_path / "b" / "best.pt")["model_config"]["gru_impl"] == "padded"


def test_refit_head_replaces_the_trained_head_by_the_probe_of_its_own_embeddings(synth_mel_dir, tmp_path):
    """optim.refit_head: best.pt's classifier becomes select_linear_head of the best encoder's
    embeddings (itself checked against scikit-learn above); metrics.json scores that head and
    keeps the trained head's scores; without the key nothing changes."""
    from conftest import tiny_stage

    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.models.embed import embed_utterances
    from ser_cl.metrics import classification_report
    from ser_cl.train.checkpoint import load_checkpoint, load_model
    from ser_cl.train.head_fit import select_linear_head
    from ser_cl.train.loop import train_fold

    store = FeatureStore(synth_mel_dir)
    fold = make_folds(store)[0]
    cpu = torch.device("cpu")
    plain = train_fold(tiny_stage(optim={"epochs": 2}), store, fold, tmp_path / "plain", cpu, progress=False)
    refit = train_fold(tiny_stage(optim={"epochs": 2, "refit_head": True}), store, fold, tmp_path / "refit", cpu,
                       progress=False)
    assert "trained_head" not in plain
    assert refit["trained_head"] == {"val": plain["val"], "test": plain["test"]}  # same training, same seed
    model = load_model(tmp_path / "refit" / "best.pt", cpu)[0]
    trained = load_model(tmp_path / "plain" / "best.pt", cpu)[0]
    for part in (fold.train, fold.val):  # the encoder is the trained one; only the head changed
        np.testing.assert_allclose(embed_utterances(model, store, part, cpu)[0],
                                   embed_utterances(trained, store, part, cpu)[0], atol=1e-5)
    train_x = embed_utterances(trained, store, fold.train, cpu)[0]
    val_x = embed_utterances(trained, store, fold.val, cpu)[0]
    W, b = select_linear_head(train_x, store.labels[fold.train], val_x, store.labels[fold.val], len(store.classes))
    torch.testing.assert_close(model.classifier.weight, W, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.classifier.bias, b, atol=1e-5, rtol=1e-4)
    test_x = embed_utterances(trained, store, fold.test, cpu)[0]
    preds = (torch.from_numpy(test_x) @ W.T + b).argmax(1).numpy()
    assert refit["test"] == classification_report(store.labels[fold.test], preds, len(store.classes))
    assert load_checkpoint(tmp_path / "refit" / "best.pt")["refit_head"] is True
