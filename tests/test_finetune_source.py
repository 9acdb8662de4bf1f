"""A fine-tuning fold may not start from a pretrained fold that trained on its held-out speakers.

Pretraining under one protocol and fine-tuning under another can give the same fold names
(``speaker`` and ``session10`` both give fold-01..10 on a 5-session, 10-speaker corpus) while
the folds hold different speakers: fine-tuning fold-02 of session10 (test speaker Ses01F) from
fold-02 of ``speaker`` (which trained on Ses01F) would test on a speaker the encoder saw.
"""

from __future__ import annotations

import json

import pytest

from ser_cl.config import ConfigError
from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.store import FeatureStore
from ser_cl.experiment import Variant
from ser_cl.train.run import run_variant

from conftest import tiny_stage


@pytest.fixture(scope="module")
def speaker_pretrain(synth_mel_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    cfg = tiny_stage(stage="pretrain", data={"dir": str(synth_mel_dir), "protocol": "speaker"},
                     loss={"name": "supcon", "tau": 0.5}, optim={"epochs": 1}, runs_dir=str(runs), experiment="e")
    return run_variant(Variant(cfg, "pre", {}), folds=[2], progress=False), runs


def _finetune(data_dir, source, runs, protocol):
    return tiny_stage(stage="finetune", data={"dir": str(data_dir), "protocol": protocol},
                      finetune={"from": str(source), "freeze_epochs": 1}, optim={"epochs": 1},
                      runs_dir=str(runs), experiment="e")


def test_the_pretraining_trained_on_this_folds_test_speaker(synth_mel_dir, speaker_pretrain):
    source, runs = speaker_pretrain
    store = FeatureStore(synth_mel_dir)
    target = make_folds(store, "session10")[1]
    split = json.loads((source / "fold-02" / "split.json").read_text())
    trained_speakers = {store.speakers[store.utt_ids.index(u)] for u in split["train"]}
    leaked = sorted(trained_speakers & set(target.test_speakers + target.val_speakers))
    assert leaked  # the scenario holds: same fold name, different speakers
    with pytest.raises(ConfigError, match="fold-02") as err:
        run_variant(Variant(_finetune(synth_mel_dir, source, runs, "session10"), "ft", {}), folds=[2], progress=False)
    assert all(s in str(err.value) for s in leaked), str(err.value)
    assert "\n" not in str(err.value)
    assert not (runs / "e" / "ft" / "fold-02" / "best.pt").exists()


def test_the_same_protocol_fine_tunes(synth_mel_dir, speaker_pretrain):
    source, runs = speaker_pretrain
    out = run_variant(Variant(_finetune(synth_mel_dir, source, runs, "speaker"), "ft-same", {}), folds=[2],
                      progress=False)
    assert json.loads((out / "fold-02" / "metrics.json").read_text())["status"] == "complete"
