"""Real-data check: prepare EmoDB (22.05 kHz, resampled) when the shared copy is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ser_cl.data.splits.folds import make_folds
from ser_cl.data.stores.prepare import prepare
from ser_cl.data.stores.store import FeatureStore

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"
README_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M", "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


@pytest.mark.skipif(not EMODB.is_dir(), reason=f"EmoDB not found at {EMODB}")
def test_prepare_emodb(tmp_path):
    result = prepare(EMODB, tmp_path / "emodb", jobs=2, progress=False)
    assert result.corpus == "emodb"
    store = FeatureStore(tmp_path / "emodb")
    assert len(store) == 535 and not result.info["skipped"]
    assert len(set(store.speakers)) == 10 and len(store.classes) == 7
    assert set(store.classes) == {"neutral", "happy", "sad", "angry", "fear", "disgust", "boredom"}
    assert {s: g for s, g in zip(store.speakers, store.genders)} == README_GENDERS
    assert store.info["counts_per_class"]["angry"] == 127  # W files in the corpus
    folds = make_folds(store)
    assert len(folds) == 10 and store.info["folds"]["protocol"] == "speaker"
    x = store[0].astype(np.float32)
    assert x.shape[1] == 257 and np.isfinite(x).all() and x.std() > 1.0
