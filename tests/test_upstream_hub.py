"""``--upstream ORG/NAME``: a Hugging Face model id resolved in the local Hugging Face cache,
offline, nothing downloaded. The cache is a temporary HF_HOME laid out here as the hub client
lays it out (refs/main -> snapshots/<commit>/ files linked to the checkpoint's files)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_whisper  # noqa: E402

transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

from typer.testing import CliRunner  # noqa: E402

from ser_cl.cli import app  # noqa: E402
from ser_cl.data.frontends import upstream as up  # noqa: E402
from ser_cl.data.frontends.features import feature_params  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REAL_WHISPER = Path(__file__).resolve().parents[2] / "shared" / "upstreams" / "whisper-base"


def _populate(hf_home: Path, repo_id: str, source: Path) -> Path:
    """hf_home/hub/models--ORG--NAME as the hub client writes it; returns the snapshot directory."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            os.symlink(f.resolve(), snapshot / f.name)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    path = save_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))
    return path


def _wave(seconds=1.1):
    return (0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)


def test_a_model_id_is_read_from_the_hugging_face_cache(hf_home, tiny_whisper):
    snapshot = _populate(hf_home, "someorg/tiny-whisper", tiny_whisper)
    by_id = feature_params("ssl", upstream="someorg/tiny-whisper", layer=1)
    local = feature_params("ssl", upstream=str(tiny_whisper), layer=1)
    assert by_id["upstream"]["path"] == str(snapshot.resolve()) and by_id["upstream"]["hub_id"] == "someorg/tiny-whisper"
    assert "hub_id" not in local["upstream"] and by_id["upstream"]["config_hash"] == local["upstream"]["config_hash"]
    wave = _wave()
    np.testing.assert_array_equal(up.Upstream(by_id, "cpu").extract([wave])[0],
                                  up.Upstream(local, "cpu").extract([wave])[0])


def test_a_model_id_missing_from_the_cache_is_refused_in_one_line(hf_home, synth_corpus_dir, tmp_path):
    _populate(hf_home, "someorg/other", tmp_path)  # a cache that holds another model
    result = CliRunner().invoke(app, ["prepare", str(synth_corpus_dir), "-o", str(tmp_path / "out"),
                                      "--features", "ssl", "--upstream", "someorg/absent"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "no Hugging Face model someorg/absent in the cache" in lines[0] and "hf download someorg/absent" in lines[0]
    assert str(hf_home / "hub") in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_existing_directory_wins_over_a_model_id(hf_home, tiny_whisper, tmp_path, monkeypatch):
    local = tmp_path / "org" / "name"
    local.parent.mkdir()
    os.symlink(tiny_whisper, local)
    monkeypatch.chdir(tmp_path)
    params = feature_params("ssl", upstream="org/name", layer=1)  # no cache entry: the directory is used
    assert params["upstream"]["path"] == str(tiny_whisper.resolve()) and "hub_id" not in params["upstream"]


@pytest.mark.skipif(not (REAL_WHISPER / "model.safetensors").is_file(), reason="../shared/upstreams/whisper-base absent")
def test_openai_whisper_base_by_its_id(hf_home):
    snapshot = _populate(hf_home, "openai/whisper-base", REAL_WHISPER)
    by_id = feature_params("ssl", upstream="openai/whisper-base", layer=4, whisper_window="clip")
    local = feature_params("ssl", upstream=str(REAL_WHISPER), layer=4, whisper_window="clip")
    assert by_id["upstream"]["path"] == str(snapshot.resolve())
    assert by_id["upstream"]["config_hash"] == local["upstream"]["config_hash"]
    assert {k: v for k, v in by_id.items() if k != "upstream"} == {k: v for k, v in local.items() if k != "upstream"}
    wave = _wave(0.7)
    np.testing.assert_array_equal(up.Upstream(by_id, "cpu").extract([wave])[0],
                                  up.Upstream(local, "cpu").extract([wave])[0])
