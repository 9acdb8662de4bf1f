"""Presets: the front-end each was chosen for (checked against the data store, --force to go
on), the description of the stages they change, unknown names; and the --fold check of a dry
run and the learning rate in the per-epoch line. Small: nothing here trains more than one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ser_cl.cli import app

ROOT = Path(__file__).resolve().parents[1]
CE = ROOT / "experiments" / "ce_baseline.toml"
PRESETS = sorted(p.stem for p in (ROOT / "experiments" / "presets").glob("*.toml"))


def invoke(*args, ok: bool = True):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def data(path: Path) -> str:
    return f"data.dir={json.dumps(str(path))}"


def source_of(data_dir: Path) -> str:
    return json.loads((data_dir / "prepare.json").read_text())["source"]


# ------------------------------------------------------------------ 2. a preset names its front-end


def test_every_shipped_preset_declares_the_front_end_it_was_chosen_for():
    from ser_cl.pipeline import preset_front_end

    declared = {name: preset_front_end(name) for name in PRESETS}
    assert declared["cpu"] == {"features": "mel", "n_mels": 64}
    assert declared["cpu-v1"] == {"features": "mel", "n_mels": 64}
    assert declared["cpu-thesis"] == {"features": "spectrogram"}
    assert all(declared.values()), declared


@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "real"])
def test_the_cpu_preset_on_a_spectrogram_store_stops_with_the_prepare_command(command, dry, synth_data_dir, tmp_path):
    args = [command, CE, "--preset", "cpu", "--set", data(synth_data_dir),
            "--set", f"runs_dir={json.dumps(str(tmp_path))}"]
    res = invoke(*args, *(["--dry-run"] if dry else []), ok=False)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, lines
    prepare = f"ser-cl prepare {source_of(synth_data_dir)} --out {synth_data_dir}-mel64 --features mel --n-mels 64"
    assert lines[0].startswith("error: preset 'cpu' was chosen for 64-band log-mel features")
    assert f"{synth_data_dir} holds 257-bin spectrograms" in lines[0]
    assert prepare in lines[0] and "--force" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_another_band_count_is_another_front_end(synth_mel_dir):
    res = invoke("train", CE, "--preset", "cpu-v1", "--set", data(synth_mel_dir), "--dry-run", ok=False)
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert f"{synth_mel_dir} holds 40-band log-mel features" in line
    # the store is .../synth-mel0: the new one goes beside it as .../synth-mel64, not .../synth-mel0-mel64
    assert f"--out {synth_mel_dir.parent / 'synth-mel64'} --features mel --n-mels 64" in line


def test_a_spectrogram_preset_on_a_mel_store_gives_the_spectrogram_command(synth_mel_dir):
    res = invoke("train", CE, "--preset", "cpu-thesis", "--set", data(synth_mel_dir), "--dry-run", ok=False)
    (line,) = res.output.strip().splitlines()
    assert "preset 'cpu-thesis' was chosen for 257-bin spectrograms" in line
    out = synth_mel_dir.parent / "synth-spec"
    assert f"ser-cl prepare {source_of(synth_mel_dir)} --out {out} --features spectrogram" in line


def test_a_matching_store_plans_without_a_word(synth_data_dir, synth_mel_dir, tmp_path):
    out = invoke("train", CE, "--preset", "cpu-thesis", "--set", data(synth_data_dir), "--dry-run").output
    assert out.split()[:2] == ["train", str(Path("runs/ce_baseline/train"))] and "warning" not in out
    preset = tmp_path / "mel40.toml"
    preset.write_text('[front_end]\nfeatures = "mel"\nn_mels = 40\n\n[optim]\nepochs = 2\n')
    out = invoke("train", CE, "--preset", preset, "--set", data(synth_mel_dir), "--dry-run").output
    assert out.split()[:2] == ["train", str(Path("runs/ce_baseline/train"))] and "warning" not in out
    plain = tmp_path / "plain.toml"  # a preset that declares no front-end is not checked
    plain.write_text("[optim]\nepochs = 2\n")
    assert "warning" not in invoke("train", CE, "--preset", plain, "--set", data(synth_data_dir), "--dry-run").output


@pytest.mark.parametrize("command", ["train", "pretrain", "finetune", "run"])
def test_force_goes_on_with_a_one_line_warning(command, synth_data_dir):
    experiment = {"pretrain": "selfsup_ntxent.toml", "finetune": "selfsup_ntxent.toml"}.get(command, "ce_baseline.toml")
    res = invoke(command, ROOT / "experiments" / experiment, "--preset", "cpu", "--set", data(synth_data_dir),
                 "--dry-run", "--force")
    lines = res.output.strip().splitlines()
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1, lines
    assert "preset 'cpu' was chosen for 64-band log-mel features" in warnings[0]
    assert f"{synth_data_dir} holds 257-bin spectrograms" in warnings[0] and "--force" in warnings[0]
    assert len(lines) > 1  # the plan follows


def test_force_trains(synth_data_dir, tmp_path, monkeypatch):
    import ser_cl.cli.train_commands as train_commands
    import ser_cl.train.run as run_mod

    ran = []
    monkeypatch.setattr(run_mod, "run_variant", lambda v, *a, **k: ran.append(v.name) or tmp_path)
    monkeypatch.setattr(train_commands, "print_summary", lambda out: None)
    res = invoke("train", CE, "--preset", "cpu", "--set", data(synth_data_dir), "--force")
    assert ran == ["train"] and res.output.startswith("warning: preset 'cpu'")


def test_run_on_several_devices_hands_force_to_its_workers(synth_data_dir, monkeypatch):
    import ser_cl.pipeline as pipeline

    seen = []
    monkeypatch.setattr(pipeline, "run_on_devices", lambda argv, *a, **k: seen.append(argv))
    invoke("run", CE, "--preset", "cpu", "--set", data(synth_data_dir), "--force", "--devices", "cpu,cpu",
           "--no-report")
    assert "--force" in seen[0] and seen[0][seen[0].index("--preset") + 1] == "cpu"


def test_a_bad_front_end_table_is_blamed_on_the_preset(tmp_path, synth_data_dir):
    from ser_cl.config import ConfigError
    from ser_cl.experiment import load_experiment

    preset = tmp_path / "p.toml"
    for text, match in [('[front_end]\nfeatures = "mfcc"\n', "unknown feature kind"),
                        ('[front_end]\nfeatures = "mel"\nbands = 64\n', "unknown key 'front_end.bands'"),
                        ('[front_end]\nn_mels = 64\n', "front_end.features"),
                        ('front_end = "mel"\n', r"\[front_end\] must be a table")]:
        preset.write_text(text)
        with pytest.raises(ConfigError, match=match) as err:
            load_experiment(CE, [], str(preset))
        assert str(preset) in str(err.value)


# ------------------------------------------------------------------ 3a. the description follows the preset


def test_a_preset_that_turns_augmentation_on_says_so_in_the_description(tmp_path):
    from ser_cl.experiment import load_experiment

    (plain,) = load_experiment(CE)
    assert plain.description == "CE baseline, no augmentation (thesis 4.4.1)"
    (cpu,) = load_experiment(CE, [], "cpu")
    assert cpu.augment.enabled
    assert cpu.description.startswith("CE baseline, no augmentation (thesis 4.4.1); preset cpu: augmentation on, ")
    assert "model.input_norm=speaker" in cpu.description and "optim.epochs=30" in cpu.description
    preset = tmp_path / "p.toml"
    preset.write_text('[optim]\nepochs = 50\nlr = 5e-4\n\n[kind.train.augment]\nenabled = true\nmixup_alpha = 0.2\n'
                      '[kind.finetune.optim]\nepochs = 3\n')
    (stage,) = load_experiment(CE, [], str(preset))  # epochs = 50 is the file's own: not a change
    assert stage.description == ("CE baseline, no augmentation (thesis 4.4.1); "
                                 f"preset {preset}: augmentation on, optim.lr=0.0005, augment.mixup_alpha=0.2")
    (stage,) = load_experiment(CE, ["augment.enabled=false", "augment.mixup_alpha=0"], str(preset))
    assert stage.description == f"CE baseline, no augmentation (thesis 4.4.1); preset {preset}: optim.lr=0.0005"
    stages = {s.name: s for s in load_experiment(ROOT / "experiments/selfsup_ntxent.toml", [], "cpu")}
    assert "augmentation on" not in stages["pretrain"].description  # its views were augmented already
    assert "augment.view_frames=150" in stages["pretrain"].description


def test_the_description_is_written_into_run_json_and_config_toml(synth_mel_dir, tmp_path):
    from ser_cl.experiment import load_experiment, tomllib
    from ser_cl.train.run import plan

    (p,) = plan(load_experiment(CE, [data(synth_mel_dir)], "cpu"))
    assert "preset cpu: augmentation on" in p.variants[0].config.description
    from ser_cl.config import to_toml

    assert "preset cpu: augmentation on" in tomllib.loads(to_toml(p.variants[0].config))["description"]


# ------------------------------------------------------------------ 3b. an unknown preset


def test_an_unknown_preset_lists_the_presets_and_suggests_one():
    res = invoke("train", CE, "--preset", "cpuu", "--dry-run", ok=False)
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert "preset 'cpuu' not found" in line and "did you mean 'cpu'?" in line
    assert f"presets: {', '.join(PRESETS)}" in line
    (line,) = invoke("train", CE, "--preset", "zzz", "--dry-run", ok=False).output.strip().splitlines()
    assert "did you mean" not in line and f"presets: {', '.join(PRESETS)}" in line


# ------------------------------------------------------------------ 3c. --fold out of range in a dry run


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "real"])
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_fold_past_the_protocols_folds_is_refused(command, dry, synth_mel_dir, tmp_path):
    args = [command, CE, "--set", data(synth_mel_dir), "--set", "data.protocol=session5", "--fold", "9",
            "--set", f"runs_dir={json.dumps(str(tmp_path))}"]
    res = invoke(*args, *(["--dry-run"] if dry else []), ok=False)
    assert res.exit_code == 2, res.output
    (line,) = res.output.strip().splitlines()
    assert line == "error: --fold must be between 1 and 5 (protocol session5)"
    assert invoke(*args[:-4], "--fold", "5", "--dry-run").exit_code == 0


# ------------------------------------------------------------------ 3d. the learning rate per epoch


def test_the_epoch_line_shows_a_small_learning_rate_in_scientific_notation(synth_mel_dir, tmp_path, capsys):
    import torch

    from conftest import tiny_stage
    from ser_cl.data.splits.folds import make_folds
    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.train.loop import train_fold

    store = FeatureStore(synth_mel_dir)
    cfg = tiny_stage(optim={"epochs": 1, "lr": 3.2e-5})
    train_fold(cfg, store, make_folds(store, "session10")[0], tmp_path, torch.device("cpu"), progress=True)
    line = next(line for line in capsys.readouterr().out.splitlines() if " epoch 1/1 " in line)
    assert " lr=3.2e-05" in line, line
    assert " val_ua=0." in line  # the scores keep their 4 decimals


def test_a_store_of_upstream_features_is_not_called_log_mel(synth_mel_dir, tmp_path, monkeypatch):
    """The mismatch line names what an ssl store holds (it said "N-band log-mel features")."""
    import shutil

    from ser_cl.data.stores.store import FeatureStore
    from ser_cl.pipeline import front_end_mismatch

    data = tmp_path / "ssl-store"
    shutil.copytree(synth_mel_dir, data, ignore=shutil.ignore_patterns("cache"))
    info = json.loads((data / "prepare.json").read_text())
    info["features"] = {"name": "ssl", "n_freq": 40}  # what matters here: the kind and the width
    (data / "prepare.json").write_text(json.dumps(info))
    monkeypatch.setattr("ser_cl.data.frontends.features.canonical_params", lambda params: dict(params))
    assert FeatureStore(data).n_freq == 40
    line = front_end_mismatch("cpu", {"features": "mel", "n_mels": 64}, data)
    assert "40-dimensional self-supervised upstream features" in line and "log-mel features" not in line.split(" holds ")[1]
