"""TensorBoard logs (optim.tensorboard): a mirror of metrics.jsonl / metrics.json per fold, read
back with TensorBoard's own reader; off, missing-package and fingerprint behaviour."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("torch.utils.tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ser_cl.config import ConfigError  # noqa: E402
from ser_cl.data.splits.folds import make_folds  # noqa: E402
from ser_cl.data.stores.store import FeatureStore  # noqa: E402
from ser_cl.train import tensorboard_log  # noqa: E402
from ser_cl.train.loop import train_fold  # noqa: E402
from ser_cl.train.fingerprint import config_fingerprint  # noqa: E402
from ser_cl.train.tensorboard_log import FoldLog, scalar_tag  # noqa: E402

from conftest import tiny_stage as stage  # noqa: E402  (the tests folder is on sys.path)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def store(synth_mel_dir):
    return FeatureStore(synth_mel_dir)


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _jsonl(fold_dir):
    return [json.loads(line) for line in (fold_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_mirrors_jsonl(acc: EventAccumulator, history) -> None:
    """Every float of every record, at its epoch, and nothing else per epoch."""
    floats = {key for record in history for key, value in record.items() if isinstance(value, float)}
    epoch_tags = {tag for tag in acc.Tags()["scalars"] if not tag.startswith("final/")}
    assert epoch_tags == {scalar_tag(key) for key in floats}
    for key in floats:
        logged = [(e.step, e.value) for e in acc.Scalars(scalar_tag(key))]
        expected = [(r["epoch"], r[key]) for r in history if isinstance(r.get(key), float)]
        assert [s for s, _ in logged] == [s for s, _ in expected], key
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), key  # float32


def test_each_epoch_and_the_final_scores_mirror_metrics_files(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    fold_dir = tmp_path / "fold-01"
    metrics = train_fold(stage(), store, fold, fold_dir, CPU, progress=False)
    history = _jsonl(fold_dir)
    assert [r["epoch"] for r in history] == [1, 2]
    acc = _events(fold_dir / "tensorboard")
    _assert_mirrors_jsonl(acc, history)
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/ua", "val/wa", "lr/encoder"} <= tags  # the names docs/tensorboard.md gives
    for part in ("val", "test"):
        for key in ("ua", "wa"):
            (event,) = acc.Scalars(f"final/{part}_{key}")
            assert event.step == metrics["epochs_run"] == 2
            assert event.value == pytest.approx(metrics[part][key], rel=1e-6)
        (image,) = acc.Images(f"confusion/{part}")  # matplotlib is in the [test] extra
        assert image.step == 2 and image.width > 100 and image.height > 100


def test_a_resumed_fold_appends_to_the_same_log(store, tmp_path):
    fold = make_folds(store, "session10")[1]
    fold_dir = tmp_path / "fold"

    def kill(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_fold(stage(), store, fold, fold_dir, CPU, on_epoch_end=kill, progress=False)
    # the writer was closed on the way out, with epoch 1 on disk
    assert [e.step for e in _events(fold_dir / "tensorboard").Scalars("val/ua")] == [1]
    train_fold(stage(), store, fold, fold_dir, CPU, progress=False)
    assert len(list((fold_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    _assert_mirrors_jsonl(_events(fold_dir / "tensorboard"), _jsonl(fold_dir))


def test_a_fold_restarted_from_scratch_shows_the_new_curves_only(store, tmp_path):
    """last.pt deleted (as the divergence error suggests): epoch 1 again; TensorBoard drops the
    earlier run's points from that epoch on (purge_step), the final scores included."""
    fold = make_folds(store, "session10")[2]
    fold_dir = tmp_path / "fold"
    train_fold(stage(), store, fold, fold_dir, CPU, progress=False)
    for name in ("last.pt", "best.pt", "metrics.json", "metrics.jsonl"):
        (fold_dir / name).unlink()
    train_fold(stage(optim={"epochs": 1, "lr": 1e-3}), store, fold, fold_dir, CPU, progress=False)
    acc = _events(fold_dir / "tensorboard")
    _assert_mirrors_jsonl(acc, _jsonl(fold_dir))  # epoch 2 of the first run is gone too
    assert [e.step for e in acc.Scalars("final/val_ua")] == [1]


def test_off_writes_no_log(store, tmp_path):
    fold = make_folds(store, "session10")[0]
    train_fold(stage(optim={"epochs": 1, "tensorboard": "off"}), store, fold, tmp_path / "f", CPU, progress=False)
    assert (tmp_path / "f" / "metrics.json").is_file()
    assert not (tmp_path / "f" / "tensorboard").exists()


def _without_tensorboard(monkeypatch):
    """The package missing: importing torch.utils.tensorboard fails."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError):
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401


def test_auto_without_the_package_trains_silently_without_a_log(store, tmp_path, monkeypatch, capsys, recwarn):
    _without_tensorboard(monkeypatch)
    fold = make_folds(store, "session10")[0]
    train_fold(stage(optim={"epochs": 1}), store, fold, tmp_path / "f", CPU, progress=False)
    assert (tmp_path / "f" / "metrics.json").is_file()
    assert not (tmp_path / "f" / "tensorboard").exists()
    out, err = capsys.readouterr()
    assert "tensorboard" not in (out + err).lower()
    assert not [w for w in recwarn if "tensorboard" in str(w.message).lower()]


def test_on_without_the_package_stops_in_one_line_naming_the_pip_command(store, tmp_path, monkeypatch):
    _without_tensorboard(monkeypatch)
    fold = make_folds(store, "session10")[0]
    with pytest.raises(ConfigError) as info:
        train_fold(stage(optim={"epochs": 1, "tensorboard": "on"}), store, fold, tmp_path / "f", CPU, progress=False)
    message = str(info.value)
    assert "\n" not in message and 'pip install "ser-cl[tensorboard]"' in message and "optim.tensorboard" in message
    assert not (tmp_path / "f" / "last.pt").exists()  # stopped before training


def test_on_with_the_package_logs(tmp_path):
    with FoldLog(tmp_path, "on") as tb:
        tb.epoch({"epoch": 1, "train_loss": 1.5, "val_ua": 0.5, "lr": 1e-3, "head_lr": None, "phase": "train",
                  "frozen_encoder": False, "best_epoch": 1})
    acc = _events(tmp_path / "tensorboard")
    assert set(acc.Tags()["scalars"]) == {"train/loss", "val/ua", "lr/encoder"}  # floats only; None skipped


def test_only_rank_0_writes(tmp_path):
    with FoldLog(tmp_path, "on", enabled=False) as tb:
        tb.epoch({"epoch": 1, "val_ua": 0.5})
        tb.final({"epochs_run": 1, "classes": ["a", "b"], "val": {"ua": 0.5, "wa": 0.5, "confusion": [[1, 0], [1, 0]]}})
    assert not (tmp_path / "tensorboard").exists()


def test_without_matplotlib_the_confusion_matrix_is_a_markdown_table(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorboard_log, "_matplotlib", lambda: None)
    confusion = [[3, 1], [0, 4]]
    with FoldLog(tmp_path, "auto") as tb:
        tb.final({"epochs_run": 5, "classes": ["neu", "ang"], "val": {"ua": 0.875, "wa": 0.875, "confusion": confusion},
                  "test": None})
    acc = _events(tmp_path / "tensorboard")
    assert acc.Tags()["images"] == []
    (event,) = acc.Tensors("confusion/val/text_summary")
    text = event.tensor_proto.string_val[0].decode()
    assert event.step == 5
    assert text.splitlines()[2:] == ["| neu | 3 | 1 |", "| ang | 0 | 4 |"]
    assert [e.value for e in acc.Scalars("final/val_ua")] == [0.875]
    assert "final/test_ua" not in acc.Tags()["scalars"]


def test_scalar_tags():
    assert [scalar_tag(k) for k in ("train_loss", "train_supcon", "val_ua", "val_loss", "lr", "head_lr", "seconds")] \
        == ["train/loss", "train/supcon", "val/ua", "val/loss", "lr/encoder", "lr/head", "epoch/seconds"]


def test_the_key_is_validated_and_never_in_the_fingerprint():
    with pytest.raises(ConfigError, match="optim.tensorboard must be one of auto, on, off"):
        stage(optim={"tensorboard": "yes"})
    prints = [config_fingerprint(stage(optim={"tensorboard": mode})) for mode in ("auto", "on", "off")]
    assert prints[0] == prints[1] == prints[2]
    assert not any("tensorboard" in key for key in prints[0])


def test_confusion_image_rows_are_true_classes():
    image = tensorboard_log.confusion_image(np.array([[2, 0], [1, 1]]), ["a", "b"], "t")
    assert image is not None and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
