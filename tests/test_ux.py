"""What a user meets: predict on odd clips, safe checkpoint loading, file modes, messages, help,
progress output, the end-of-training summary. Small and fast: no training runs here."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ser_cl.cli import app

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(n_freq=257, conv_channels=2, gru_hidden=4, gru_layers=1, n_heads=2, d_ff=8)
CLASSES = ["neutral", "happy", "sad", "angry"]


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def tiny_checkpoint(path: Path, has_head: bool = True) -> Path:
    from ser_cl.models import ModelConfig, SERModel
    from ser_cl.train.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig(**TINY_MODEL)
    save_checkpoint(path, SERModel(cfg, len(CLASSES)).eval(), cfg, CLASSES, n_freq=257, epoch=0, value=0.5,
                    has_head=has_head)
    return path


def sine(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# --------------------------------------------------------------------------- 1. predict, short clip


def test_predict_gives_a_too_short_clip_its_reason_and_predicts_the_others(tmp_path):
    from ser_cl.data.frontends.audio import write_wav

    ckpt = tiny_checkpoint(tmp_path / "best.pt")
    short, good = tmp_path / "short.wav", tmp_path / "good.wav"
    write_wav(good, sine(0.5))
    # 10 ms (less than one analysis frame) and 100 ms (frames, but shorter than prepare keeps: 0.25 s)
    for seconds in (0.01, 0.1):
        write_wav(short, sine(seconds))
        res = invoke("predict", ckpt, short, good, "--device", "cpu", ok=False)
        # bad input exits 2 (as everywhere in the CLI); the reason goes to stderr, the others are predicted
        assert res.exit_code == 2 and not isinstance(res.exception, Exception), res.output + repr(res.exception)
        assert res.stderr.strip() == (f"error: {short}: too short: {seconds:.3f} s, needs at least 0.25 s "
                                      "(the shortest clip `ser-cl prepare` keeps)")
        lines = res.stdout.strip().splitlines()
        assert len(lines) == 1
        path, emotion, probs, norm = lines[0].split("\t")
        assert path == str(good) and emotion in CLASSES and norm == "normalisation: model"
        assert sum(float(item.split("=")[1]) for item in probs.split()) == pytest.approx(1.0, abs=2e-3)

    # exactly prepare's minimum is enough
    write_wav(short, sine(0.25))
    res = invoke("predict", ckpt, short, "--device", "cpu", "--json")
    assert json.loads(res.output)[0]["emotion"] in CLASSES


@pytest.mark.parametrize("features", [
    {"name": "mel", "n_mels": 64, "f_min": 0.0, "f_max": 8000.0},
    {"name": "functionals", "feature_set": "eGeMAPSv02"},
    {"name": "ssl", "upstream": "whisper-base", "layer": 6},
], ids=["mel", "functionals", "ssl"])
def test_predict_refuses_a_short_clip_whatever_the_front_end(tmp_path, monkeypatch, features):
    """The minimum length is checked on the waveform, before any front-end runs: a 100 ms clip gets
    the same one-line error from a log-mel, an openSMILE or an upstream model (the front-end is
    never asked about it), and the other files are still predicted."""
    import ser_cl.predict as predict
    from ser_cl.data.frontends.audio import write_wav

    torch.manual_seed(0)
    ckpt = tiny_checkpoint(tmp_path / "best.pt")
    state = torch.load(ckpt, weights_only=True)
    state["features"] = features
    torch.save(state, ckpt)
    asked = []

    def front_end(wave, ck, device=None):  # stands in for the front-end: 257 bins, one frame per 10 ms
        asked.append(wave.size)
        return np.zeros((max(1, wave.size // 160), 257), np.float32)

    monkeypatch.setattr(predict, "model_input", front_end)
    short, good = tmp_path / "short.wav", tmp_path / "good.wav"
    write_wav(short, sine(0.1))
    write_wav(good, sine(0.5))
    res = invoke("predict", ckpt, short, good, "--device", "cpu", ok=False)
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: {short}: too short: 0.100 s, needs at least 0.25 s "
                                  "(the shortest clip `ser-cl prepare` keeps)")
    assert res.stdout.startswith(f"{good}\t") and asked == [8000]


# --------------------------------------------------------------------------- 2. safe checkpoint loading


class _RunsCode:
    """Unpickling this calls os.system: what a malicious .pt would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    from ser_cl.train.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _RunsCode(marker)}, evil)
    with pytest.raises(ValueError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{evil}: refused to load") and "system" in message
    assert not marker.exists()  # the payload never ran
    res = invoke("predict", evil, tmp_path / "x.wav", ok=False)
    assert res.exit_code == 2 and "refused to load" in res.output and len(res.output.strip().splitlines()) == 1
    assert not marker.exists()


def test_the_checkpoints_training_writes_load_as_tensors_and_plain_types(tmp_path):
    """best.pt and last.pt hold exactly what loop.py puts in them: state dicts, history, RNG states."""
    from ser_cl.models import ModelConfig, SERModel
    from ser_cl.train.checkpoint import load_checkpoint, load_model, save_checkpoint
    from ser_cl.train.loop import _rng_state, _set_rng_state

    cfg = ModelConfig(**TINY_MODEL)
    model = SERModel(cfg, len(CLASSES))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.1, patience=3)
    model(torch.randn(2, 30, 257), torch.tensor([30, 20])).sum().backward()
    optimizer.step()
    scheduler.step(0.5)
    np_rng, aug_gen = np.random.default_rng(7), torch.Generator().manual_seed(7)
    np_rng.random(3)
    history = [{"epoch": 1, "train_loss": 1.2, "val_loss": None, "val_ua": 0.5, "frozen_encoder": False}]
    save_checkpoint(tmp_path / "best.pt", model, cfg, CLASSES, n_freq=257, epoch=0, value=0.5, has_head=True)
    save_checkpoint(tmp_path / "last.pt", model, cfg, CLASSES, n_freq=257, epoch=0, value=0.5, has_head=True,
                    optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), history=history,
                    best_value=0.5, best_epoch=0, bad_epochs=0, rng=_rng_state(np_rng, aug_gen))
    expected_next = np_rng.random()

    rebuilt, best = load_model(tmp_path / "best.pt")
    assert best["classes"] == CLASSES and best["value"] == 0.5
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["history"] == history
    optimizer.load_state_dict(last["optimizer"])
    scheduler.load_state_dict(last["scheduler"])
    fresh_rng, fresh_gen = np.random.default_rng(0), torch.Generator()
    _set_rng_state(last["rng"], fresh_rng, fresh_gen)
    assert fresh_rng.random() == expected_next  # the resumed run continues the same random stream


# --------------------------------------------------------------------------- 3. file modes


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("source", ["proc", "os.umask"])
def test_written_files_follow_the_umask(tmp_path, umask, mode, source, monkeypatch):
    from ser_cl import io as sio

    if source == "os.umask":  # no /proc/self/status: the fallback
        monkeypatch.setattr(sio, "_PROC_STATUS", str(tmp_path / "no-such-file"), raising=False)
    old = os.umask(umask)
    try:
        sio.write_json(tmp_path / "a.json", {"x": 1})
        sio.save_npy(tmp_path / "b.npy", np.zeros(3))
        sio.torch_save(tmp_path / "c.pt", {"x": torch.zeros(2)})
        (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask
        if hasattr(sio, "current_umask"):
            assert sio.current_umask() == umask
    finally:
        assert os.umask(old) == umask  # left as it was
    for name in ("a.json", "b.npy", "c.pt", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


# --------------------------------------------------------------------------- 4. summary after training


def fake_variant(root: Path, experiment: str, variant: str, *, head: bool, scores, n_folds: int = 10) -> Path:
    """A run directory as training leaves it; scores: per fold (val UA, test UA) or a best val loss."""
    vdir = root / experiment / variant
    vdir.mkdir(parents=True)
    folds = [f"fold-{k:02d}" for k in range(1, n_folds + 1)]
    (vdir / "run.json").write_text(json.dumps({"experiment": experiment, "variant": variant, "folds": folds,
                                               "head": head, "protocol": "session10"}))
    for fold, score in zip(folds, scores):
        (vdir / fold).mkdir()
        metrics = {"status": "complete", "best_epoch": 3, "monitor": "val_ua" if head else "val_loss"}
        if head:
            metrics.update(best_value=score[0], val={"ua": score[0], "wa": 0.5}, test={"ua": score[1], "wa": 0.5})
        else:
            metrics.update(best_value=score, val=None, test=None)
        (vdir / fold / "metrics.json").write_text(json.dumps(metrics))
    return vdir


def test_summary_per_fold_and_mean_with_a_head(tmp_path):
    from ser_cl.eval.summary import summarize_variant

    vdir = fake_variant(tmp_path, "ce_baseline", "train", head=True, scores=[(0.50, 0.40), (0.60, 0.70)])
    (vdir / "fold-03").mkdir()  # started, not finished: not averaged
    (vdir / "fold-03" / "metrics.json").write_text(json.dumps({"status": "running"}))
    assert summarize_variant(vdir) == [
        "  fold-01: val UA 50.00, test UA 40.00",
        "  fold-02: val UA 60.00, test UA 70.00",
        "ce_baseline/train: test UA 55.00 +- 15.00 (val 55.00 +- 5.00) over 2/10 folds",
    ]


def test_summary_without_a_head_gives_the_val_loss_and_how_to_get_the_svm_ua(tmp_path):
    from ser_cl.eval.summary import summarize_variant

    vdir = fake_variant(tmp_path, "selfsup_ntxent", "pretrain", head=False, scores=[3.0, 4.0, 3.5], n_folds=3)
    lines = summarize_variant(vdir)
    assert lines[:3] == ["  fold-01: best val loss 3.0000 (epoch 3)", "  fold-02: best val loss 4.0000 (epoch 3)",
                         "  fold-03: best val loss 3.5000 (epoch 3)"]
    assert lines[3].startswith("selfsup_ntxent/pretrain: best val loss 3.5000 +- 0.4082 over 3/3 folds")
    assert f"ser-cl probe {vdir}" in lines[4] and f"ser-cl report {vdir.parent}" in lines[4]


def test_train_ends_with_the_scores_of_each_variant(tmp_path, monkeypatch):
    import ser_cl.train.run as run_mod

    def fake_run_variant(variant, folds=None, device=None, progress=True, restart=False):
        return fake_variant(tmp_path, variant.config.experiment, variant.name, head=True,
                            scores=[(0.552, 0.541), (0.552, 0.541)])

    monkeypatch.setattr(run_mod, "run_variant", fake_run_variant)
    out = invoke("train", ROOT / "experiments/ce_baseline.toml").output.splitlines()
    assert out[-4:] == [f"done: {tmp_path / 'ce_baseline' / 'train'}",
                        "  fold-01: val UA 55.20, test UA 54.10", "  fold-02: val UA 55.20, test UA 54.10",
                        "ce_baseline/train: test UA 54.10 +- 0.00 (val 55.20 +- 0.00) over 2/10 folds"]


# --------------------------------------------------------------------------- 5. dry run on unprepared data


@pytest.mark.parametrize("command", ["train", "run"])
def test_dry_run_fails_like_training_on_an_unprepared_data_dir(tmp_path, command):
    missing = tmp_path / "never-prepared"
    res = invoke(command, ROOT / "experiments/ce_baseline.toml", "--set", f"data.dir={json.dumps(str(missing))}",
                 "--dry-run", ok=False)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and f"ser-cl prepare CORPUS_DIR --out {missing}" in lines[0]


def test_dry_run_on_a_prepared_data_dir_prints_the_plan(synth_data_dir):
    res = invoke("train", ROOT / "experiments/ce_baseline.toml", "--set", f"data.dir={json.dumps(str(synth_data_dir))}",
                 "--dry-run")
    assert res.output.split()[:5] == ["train", str(Path("runs/ce_baseline/train")), "folds", "10", "of"]


# --------------------------------------------------------------------------- 6. help


COMMANDS = ("prepare", "synth", "folds", "train", "pretrain", "finetune", "run", "quickstart", "probe", "report",
            "predict")


def test_help_shows_plain_flags_and_click_type_names():
    text = invoke("train", "--help").output
    assert "<bool>" not in text and "list[" not in text
    assert "train [OPTIONS] EXPERIMENT" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ --")}
    assert rows["--fold"].split()[2] == "INTEGER" and rows["--set"].split()[2] == "TEXT"
    assert rows["--dry-run"].split()[2] == "Print"  # a flag: no type column
    for command in COMMANDS + ("--version",):
        text = invoke(command, "--help").output if command != "--version" else invoke("--help").output
        for marker in ("<bool>", "<str>", "<int>", "<float>", "<path>", "list["):
            assert marker not in text, (command, marker)
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "{" not in usage, usage  # typer 0.2x writes required arguments as {name}
    assert "[RUNS_DIR]" in invoke("report", "--help").output
    assert "MODEL AUDIO..." in invoke("predict", "--help").output


# --------------------------------------------------------------------------- 7. --set errors at the CLI


def test_a_set_typo_is_blamed_on_the_set_option():
    res = invoke("train", ROOT / "experiments/ce_baseline.toml", "--set", "optim.lrr=1", ok=False)
    assert res.exit_code == 2
    assert res.output.strip() == "error: --set optim.lrr=1: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"


# --------------------------------------------------------------------------- 8. progress output


def test_progress_bars_are_off_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    from ser_cl.progress import bars_enabled, progress_bar

    monkeypatch.delenv("SER_CL_PROGRESS", raising=False)
    assert list(progress_bar(range(50), desc="x")) == list(range(50))
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SER_CL_PROGRESS", "1")
    list(progress_bar(range(50), desc="x"))
    assert "\r" in capsys.readouterr().err  # forced on: the bar is drawn
    monkeypatch.setenv("SER_CL_PROGRESS", "0")

    class Terminal:
        def isatty(self):
            return True

    assert bars_enabled(Terminal()) is False
    monkeypatch.delenv("SER_CL_PROGRESS")
    assert bars_enabled(Terminal()) is True
    list(progress_bar(range(5), disable=True))  # disable=True always wins
    assert capsys.readouterr().err == ""


def test_run_variant_prints_no_carriage_returns_and_records_protocol_and_corpus(synth_data_dir, tmp_path,
                                                                                  capsys, monkeypatch):
    import ser_cl.train.run as run_mod
    from ser_cl.experiment import expand, load_experiment

    monkeypatch.delenv("SER_CL_PROGRESS", raising=False)
    trained = []
    monkeypatch.setattr(run_mod, "train_fold", lambda cfg, store, fold, *a, **k: trained.append(fold.name))
    (stage,) = load_experiment(ROOT / "experiments/ce_baseline.toml",
                               [f"data.dir={json.dumps(str(synth_data_dir))}", f"runs_dir={json.dumps(str(tmp_path))}"])
    assert stage.data.protocol == "auto"
    out = run_mod.run_variant(expand(stage)[0], [1, 2], "cpu")
    assert trained == ["fold-01", "fold-02"]
    captured = capsys.readouterr()
    assert "\r" not in captured.err + captured.out
    info = json.loads((out / "run.json").read_text())
    assert info["protocol"] == "session10" and info["corpus"] == "iemocap"


# --------------------------------------------------------------------------- 9e. quickstart: its steps, and plots


def test_quickstart_says_each_step_and_that_plots_were_skipped_without_matplotlib(tmp_path, monkeypatch):
    import sys

    import ser_cl.data.stores.prepare as prepare_mod
    import ser_cl.data.corpora.synth as synth_mod
    import ser_cl.pipeline as pipeline
    from ser_cl.eval.report import PLOTS_HINT

    exp_dir = fake_variant(tmp_path / "runs", "quickstart", "ft_ce_aug", head=True, scores=[(0.5, 0.5)]).parent
    done = []
    monkeypatch.setattr(synth_mod, "synthesize_corpus", lambda raw, **k: done.append("synth"))
    monkeypatch.setattr(prepare_mod, "prepare", lambda raw, data, **k: done.append("prepare"))
    monkeypatch.setattr(pipeline, "run_experiment", lambda *a, **k: exp_dir)
    monkeypatch.setattr(pipeline, "plan_experiment", lambda *a, **k: [])
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = invoke("quickstart", "--out", tmp_path / "qs", "--runs-dir", tmp_path / "runs")
    assert done == ["synth", "prepare"]
    steps = [line for line in res.stderr.splitlines() if line.startswith("step ")]
    assert [s.split(":")[0] for s in steps] == ["step 1/4", "step 2/4", "step 3/4", "step 4/4"], res.stderr
    assert "## quickstart" in res.stdout
    assert PLOTS_HINT in res.stderr and PLOTS_HINT.startswith("plots skipped")


def test_predict_recomputes_the_front_end_the_model_was_trained_on(synth_corpus_dir, tmp_path):
    """A model trained on a 40-band log-mel store predicts from WAVs (its checkpoint names the front-end)."""
    from conftest import tiny_stage

    from ser_cl.data.frontends.features import feature_params
    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.prepare import prepare
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.predict import predict_files
    from ser_cl.train.loop import train_fold

    data = tmp_path / "mel"
    prepare(synth_corpus_dir, data, jobs=1, progress=False, features=feature_params("mel", n_mels=40))
    store = FeatureStore(data)
    assert store.n_freq == 40
    cfg = tiny_stage(optim={"epochs": 1}, model={"freq_kernels": "scaled"})
    train_fold(cfg, store, make_folds(store, "session10")[0], tmp_path / "fold", torch.device("cpu"), progress=False)
    wavs = sorted(synth_corpus_dir.glob("Session1/sentences/wav/*/*.wav"))[:2]
    results = predict_files(tmp_path / "fold" / "best.pt", wavs, "cpu")
    assert [set(r) for r in results] == [{"path", "emotion", "probabilities", "normalisation"}] * 2, results
