"""End to end through the command line on the synthetic corpus: synth -> prepare -> train /
pretrain -> finetune -> probe -> report -> predict, every fold, with a tiny encoder."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ser_cl import __version__
from ser_cl.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.toml"))
TINY = ["model.preset=small", "model.conv_channels=4", "model.gru_hidden=16", "model.n_heads=2", "model.freq_kernels=scaled",
        "model.d_ff=32", "optim.epochs=1", "optim.batch_size=32", "device=cpu"]


def invoke(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def sets(data_dir: Path, runs: Path, *extra: str):
    out = []
    for item in (*TINY, f"data.dir={json.dumps(str(data_dir))}", f"runs_dir={json.dumps(str(runs))}", *extra):
        out += ["--set", item]
    return out


@pytest.fixture(scope="module")
def trained(synth_mel_dir, tmp_path_factory):
    """CE on every fold, then self-supervised pretraining -> CE fine-tuning on every fold (the 5
    leave-one-session-out folds, to keep the suite short)."""
    runs = tmp_path_factory.mktemp("runs")
    five = "data.protocol=session5"
    invoke("train", ROOT / "experiments/ce_baseline.toml", *sets(synth_mel_dir, runs, five))
    invoke("pretrain", ROOT / "experiments/selfsup_ntxent.toml", "--stage", "pretrain",
           *sets(synth_mel_dir, runs, five))
    invoke("finetune", ROOT / "experiments/selfsup_ntxent.toml", "--stage", "ft_ce_aug",
           "--from", runs / "selfsup_ntxent/pretrain", *sets(synth_mel_dir, runs, five, "finetune.freeze_epochs=0"))
    return runs


def test_version_and_help():
    assert __version__ in invoke("--version").output
    for cmd in ("prepare", "synth", "folds", "train", "pretrain", "finetune", "run", "probe", "report", "predict"):
        assert "Example" in invoke(cmd, "--help").output, cmd


def test_every_fold_writes_its_files(trained):
    for variant in ("ce_baseline/train", "selfsup_ntxent/pretrain", "selfsup_ntxent/ft_ce_aug"):
        vdir = trained / variant
        info = json.loads((vdir / "run.json").read_text())
        assert info["folds"] == [f"fold-{k:02d}" for k in range(1, 6)]
        for fold in info["folds"]:
            for name in ("config.toml", "best.pt", "last.pt", "metrics.jsonl", "metrics.json", "split.json"):
                assert (vdir / fold / name).is_file(), vdir / fold / name
            assert json.loads((vdir / fold / "metrics.json").read_text())["status"] == "complete"
    assert json.loads((trained / "selfsup_ntxent/ft_ce_aug/run.json").read_text())["source"].endswith("pretrain")


def test_probe_report_predict(trained, synth_mel_dir, synth_corpus_dir, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(trained, runs)
    invoke("probe", runs)
    n = json.loads((synth_mel_dir / "prepare.json").read_text())["n_utterances"]
    for variant in ("ce_baseline/train", "selfsup_ntxent/pretrain", "selfsup_ntxent/ft_ce_aug"):
        for k in range(1, 6):
            fdir = runs / variant / f"fold-{k:02d}"
            probe = json.loads((fdir / "probe.json").read_text())
            assert set(probe) >= {"svm", "retrieval", "clustering", "classifier", "C"}
            sizes = {p: np.load(fdir / "embeddings" / f"{p}.npy").shape for p in ("train", "val", "test")}
            split = json.loads((fdir / "split.json").read_text())
            assert all(sizes[p] == (len(split[p]), 32) for p in sizes)  # 2 x gru_hidden
            assert sum(s[0] for s in sizes.values()) == n
            assert (probe["classifier"] is None) == variant.endswith("pretrain")

    out = invoke("report", runs, "--format", "csv", "--no-plots").output
    rows = list(csv.DictReader(io.StringIO(out[out.index("experiment"):])))
    assert {(r["experiment"], r["variant"]) for r in rows} == {
        ("ce_baseline", "train"), ("selfsup_ntxent", "pretrain"), ("selfsup_ntxent", "ft_ce_aug")}
    md = invoke("report", runs, "--no-plots").output
    assert "54.07" in md and "59.53" in md  # the thesis' numbers beside ours

    # a lost fold is reported by name, never silently averaged
    (runs / "ce_baseline/train/fold-04/metrics.json").unlink()
    (runs / "ce_baseline/train/fold-05/probe.json").write_text("{not json")
    md = invoke("report", runs, "--no-plots").output
    assert "fold-04" in md and "fold-05" in md and "INCOMPLETE" in md

    wavs = sorted(synth_corpus_dir.glob("Session1/sentences/wav/*/*.wav"))[:3]
    res = invoke("predict", runs / "selfsup_ntxent/ft_ce_aug", *wavs, "--json")
    results = json.loads(res.output)
    assert len(results) == 3
    for r in results:
        assert r["emotion"] in r["probabilities"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    res = invoke("predict", runs / "ce_baseline/train/fold-01/best.pt", wavs[0], bad, ok=False)
    # an unreadable file is bad input: its line on stderr, exit 2, the other file still predicted
    assert res.exit_code == 2 and "bad.wav" in res.stderr and "bad.wav" not in res.stdout
    assert len(res.stdout.strip().splitlines()) == 1 and len(res.stderr.strip().splitlines()) == 1
    res = invoke("predict", runs / "selfsup_ntxent/pretrain", wavs[0], ok=False)
    assert res.exit_code == 2 and "without a classifier head" in res.output


def test_run_is_resumable_and_skips_finished_folds(synth_mel_dir, tmp_path):
    args = ["run", ROOT / "experiments/quickstart.toml", "--fold", "1", *sets(synth_mel_dir, tmp_path)]
    first = invoke(*args).output
    assert "## quickstart" in first
    stamp = (tmp_path / "quickstart/ft_ce_aug/fold-01/best.pt").stat().st_mtime_ns
    invoke(*args)
    assert (tmp_path / "quickstart/ft_ce_aug/fold-01/best.pt").stat().st_mtime_ns == stamp


def test_bad_inputs_give_one_line_errors(tmp_path):
    res = invoke("train", tmp_path / "nope.toml", ok=False)
    assert res.exit_code == 2 and "nope.toml" in res.output and "not found" in res.output
    res = invoke("train", ROOT / "experiments/ce_baseline.toml", "--set", f"data.dir={tmp_path}", ok=False)
    assert res.exit_code == 2 and str(tmp_path) in res.output
    res = invoke("train", ROOT / "experiments/supcon.toml", ok=False)
    assert res.exit_code == 2 and "no train stage" in res.output
    res = invoke("prepare", tmp_path / "missing", "--out", tmp_path / "d", ok=False)
    assert res.exit_code != 0 and "missing" in res.output


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_file_dry_runs(path, synth_data_dir):
    # a dry run checks data.dir like training does, so it needs a prepared one
    data = f"data.dir={json.dumps(str(synth_data_dir))}"
    extra = []
    if "pool = [" in path.read_text():  # the pool's stores are checked like data.dir
        extra = ["--set", f"data.pool=[{json.dumps(str(synth_data_dir))}]", "--set", "data.pool_weights=[]"]
    out = invoke("run", path, "--dry-run", "--set", data, *extra).output.strip().splitlines()
    assert out, path
    text = path.read_text()
    n_sweep = 1
    for line in text.splitlines():
        if line.lstrip().startswith('"') and "= [" in line:
            n_sweep *= len(line.split("[", 1)[1].split(","))
    assert len(out) >= n_sweep
    # each fine-tuning stage names a source variant that the same plan trains before it
    trained = []
    for line in out:
        parts = line.split()
        if "<-" in parts:
            assert parts[parts.index("<-") + 1] in [Path(t).name for t in trained], line
        trained.append(parts[1])


def test_devices_deal_folds_to_worker_processes(synth_mel_dir, tmp_path):
    res = invoke("run", ROOT / "experiments/quickstart.toml", "--devices", "cpu,cpu", "--fold", "2", "--fold", "5",
                 *sets(synth_mel_dir, tmp_path))
    for stage in ("pretrain", "ft_ce_aug"):
        done = sorted(p.parent.name for p in (tmp_path / "quickstart" / stage).glob("fold-*/metrics.json"))
        assert done == ["fold-02", "fold-05"], (stage, done)
    assert "## quickstart" in res.output


def test_dry_run_lists_the_folds(synth_data_dir, tmp_path):
    """``--dry-run`` names the folds each variant would train (session10 on the synthetic corpus:
    10), marking those already complete."""
    data = f"data.dir={json.dumps(str(synth_data_dir))}"
    runs = f"runs_dir={json.dumps(str(tmp_path))}"
    out = invoke("run", ROOT / "experiments/ce_baseline.toml", "--dry-run", "--set", data, "--set", runs,
                 "--fold", "1", "--fold", "3").output.strip().splitlines()
    assert out == [f"train     {tmp_path}/ce_baseline/train  folds 2 of 10: fold-01, fold-03"]
    done = tmp_path / "ce_baseline" / "train" / "fold-03"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"status": "complete"}))
    out = invoke("train", ROOT / "experiments/ce_baseline.toml", "--dry-run", "--set", data, "--set", runs).output
    names = ", ".join(f"fold-{k:02d}" + (" (complete)" if k == 3 else "") for k in range(1, 11))
    assert out.strip() == f"train     {tmp_path}/ce_baseline/train  folds 10 of 10: {names}"
