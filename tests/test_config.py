"""Experiment files -> dataclasses: validation, overrides, presets, sweeps, round trip."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ser_cl.config import ConfigError, stage_from_dict, to_toml
from ser_cl.experiment import expand, load_experiment, parse_override, tomllib
from ser_cl.train.run import plan

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    path = write(tmp_path, 'stage = "train"\n[optim]\nepoch = 3\n')
    with pytest.raises(ConfigError, match=r"unknown key 'optim.epoch'.*did you mean 'optim.epochs'"):
        load_experiment(path)


def test_wrong_type_is_named(tmp_path):
    path = write(tmp_path, 'stage = "train"\n[optim]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match=r"'optim.lr' must be float"):
        load_experiment(path)


def test_int_is_accepted_for_float_but_bool_is_not_an_int(tmp_path):
    assert load_experiment(write(tmp_path, 'stage = "train"\n[optim]\nlr = 1\n'))[0].optim.lr == 1.0
    with pytest.raises(ConfigError, match="optim.epochs"):
        load_experiment(write(tmp_path, 'stage = "train"\n[optim]\nepochs = true\n'))


def test_semantic_checks(tmp_path):
    with pytest.raises(ConfigError, match="multiview"):
        load_experiment(write(tmp_path, 'stage = "pretrain"\n[loss]\nname = "selfsup_ntxent"\n'))
    with pytest.raises(ConfigError, match="loss.name must be 'ce'"):
        load_experiment(write(tmp_path, 'stage = "train"\n[loss]\nname = "supcon"\n'))
    with pytest.raises(ConfigError, match="finetune.from"):
        load_experiment(write(tmp_path, 'stage = "finetune"\n'))


def test_override_wins_and_removes_the_swept_key(tmp_path):
    path = write(tmp_path, 'stage = "pretrain"\n[loss]\nname = "supcon"\n[sweep]\n"loss.tau" = [0.1, 0.5]\n'
                           '"optim.lr" = [1e-3, 1e-4]\n')
    (stage,) = load_experiment(path)
    assert len(expand(stage)) == 4
    (stage,) = load_experiment(path, ["loss.tau=2", "data.dir=/x/y", "optim.epochs=7"])
    variants = expand(stage)
    assert [v.name for v in variants] == ["pretrain_lr=0.001", "pretrain_lr=0.0001"]
    assert all(v.config.loss.tau == 2.0 and v.config.data.dir == "/x/y" for v in variants)
    assert variants[1].config.optim.lr == 1e-4 and variants[1].config.optim.epochs == 7


def test_override_mistakes_are_blamed_on_the_override_not_the_file(tmp_path):
    path = write(tmp_path, 'stage = "train"\n[optim]\nlr = 1e-3\n')
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["optim.lrr=1"])
    assert str(info.value) == "--set optim.lrr=1: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    with pytest.raises(ConfigError) as info:
        load_experiment(path, ["data.dir=d", "optim.epochs=abc"])
    assert str(info.value) == "--set optim.epochs=abc: key 'optim.epochs' must be int, got 'abc'"
    with pytest.raises(ConfigError, match=r"^--set optim=3: 'optim' is a table"):
        load_experiment(path, ["optim=3"])
    # keys that really are in the file stay blamed on the file, even with overrides given
    bad = write(tmp_path, 'stage = "train"\n[optim]\nlrr = 1e-3\n')
    with pytest.raises(ConfigError, match=rf"^{bad}: unknown key 'optim.lrr'"):
        load_experiment(bad, ["optim.epochs=2"])


def test_parse_override_values():
    assert parse_override("optim.lr=1e-4") == ("optim.lr", 1e-4)
    assert parse_override("augment.enabled=true") == ("augment.enabled", True)
    assert parse_override("data.dir=data/emodb") == ("data.dir", "data/emodb")
    with pytest.raises(ConfigError):
        parse_override("optim.lr")


def test_preset_merges_into_every_stage(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("[model]\npreset = \"small\"\n[optim]\nepochs = 3\n")
    stages = load_experiment(ROOT / "experiments" / "selfsup_ntxent.toml", ["optim.epochs=2"], str(preset))
    assert all(s.model.preset == "small" for s in stages)
    assert all(s.optim.epochs == 2 for s in stages)  # --set beats the preset
    assert stages[0].model.normalize is True  # the stage's own [model] keys survive


def test_finetune_fans_out_over_the_source_sweep_and_takes_per_variant_thesis_numbers():
    planned = plan(load_experiment(ROOT / "experiments" / "supcon.toml"))
    pre, ft = planned
    assert len(pre.variants) == len(ft.variants) == 10
    assert [v.source for v in ft.variants] == [v.name for v in pre.variants]
    best = {v.name: v.config.thesis for v in ft.variants}["ft_ce_tau=0.1"]
    assert best["test_ua"] == 56.36 and "variants" not in best


def test_stage_order_is_checked(tmp_path):
    path = write(tmp_path, '[[stages]]\nname = "ft"\nstage = "finetune"\nfinetune = { from = "pre" }\n'
                           '[[stages]]\nname = "pre"\nstage = "pretrain"\nloss = { name = "supcon" }\n')
    with pytest.raises(ConfigError, match="must come before"):
        load_experiment(path)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_config_toml_round_trips(path):
    for p in plan(load_experiment(path)):
        for v in p.variants:
            again = stage_from_dict(tomllib.loads(to_toml(v.config)), "round trip")
            assert dataclasses.asdict(again) == dataclasses.asdict(v.config)


def test_a_preset_can_set_tables_per_stage_kind(tmp_path):
    from ser_cl.experiment import load_experiment

    preset = tmp_path / "p.toml"
    preset.write_text('[optim]\nepochs = 7\n\n[kind.finetune.optim]\nepochs = 3\n\n'
                      '[kind.train.augment]\nenabled = true\nmixup_alpha = 0.2\n')
    stages = {s.name: s for s in load_experiment(ROOT / "experiments/selfsup_ntxent.toml", [], str(preset))}
    assert stages["pretrain"].optim.epochs == 7 and stages["pretrain"].augment.mixup_alpha == 0.0
    assert stages["ft_ce_aug"].optim.epochs == 3
    (train,) = load_experiment(ROOT / "experiments/ce_baseline.toml", ["optim.epochs=2"], str(preset))
    assert train.augment.mixup_alpha == 0.2 and train.optim.epochs == 2  # --set still wins
    preset.write_text("[kind.pretraining.optim]\nepochs = 3\n")
    with pytest.raises(ConfigError, match="stage kinds"):
        load_experiment(ROOT / "experiments/ce_baseline.toml", [], str(preset))


def test_set_can_target_one_stage_kind(tmp_path):
    from ser_cl.experiment import load_experiment

    preset = tmp_path / "p.toml"
    preset.write_text("[kind.finetune.optim]\nlr = 5e-4\nepochs = 20\n")
    overrides = ["kind.finetune.optim.lr=1e-3", "optim.lr=2e-3", "kind.pretrain.optim.epochs=4",
                 "optim.epochs=9", "kind.finetune.finetune.freeze_epochs=1"]
    stages = {s.name: s for s in load_experiment(ROOT / "experiments/selfsup_ntxent.toml", overrides, str(preset))}
    pre, ft, supcon = stages["pretrain"], stages["ft_ce_aug"], stages["ft_supcon"]
    # the per-kind override wins over the plain one for its kind, whatever the order on the line
    assert (pre.optim.lr, pre.optim.epochs) == (2e-3, 4)
    assert (ft.optim.lr, ft.optim.epochs, ft.finetune.freeze_epochs) == (1e-3, 9, 1)
    assert (supcon.optim.lr, supcon.optim.epochs) == (2e-3, 4)  # ft_supcon is a pretrain stage
    for bad, message in (("kind.finetuning.optim.lr=1", "kind.<train|pretrain|finetune|baseline>.<key>"),
                         ("kind.finetune=1", "per-kind override"),
                         ("kind.train.optim.lrr=1", "unknown key 'optim.lrr'"),
                         ("kind.train.optim.lr=fast", "--set kind.train.optim.lr=fast"),
                         ("kind.train.stage=pretrain", "cannot be overridden")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_experiment(ROOT / "experiments/ce_baseline.toml", [bad])
