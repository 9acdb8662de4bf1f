"""The padded BiGRU calls the private ``torch._VF.gru`` only after a probe has shown that it
exists and matches ``nn.GRU``; otherwise it runs the public ``nn.GRU`` (packed): the same
outputs and gradients either way."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from ser_cl.models import ModelConfig, SERModel
from ser_cl.models import layers

REAL_VF = torch._VF
REAL_GRU = torch._VF.gru  # the builtin itself: the tests below replace the attribute


class _VF:
    """Stands in for ``torch._VF`` with another ``gru`` (None: none at all), everything else the real one's.

    ``nn.GRU`` keeps its own reference to the real module (``from torch import _VF``), as it
    would in a PyTorch whose private op changed along with it; only ``torch._VF`` looks different.
    """

    def __init__(self, gru=None):
        self._gru = gru

    def __getattr__(self, name):
        if name == "gru":
            if self._gru is None:
                raise AttributeError("module 'torch._VF' has no attribute 'gru'")
            return self._gru
        return getattr(REAL_VF, name)


def _gru_new_signature(input, hx, params, has_biases, num_layers, dropout, train, bidirectional):
    """A changed signature (one argument fewer): calling it the old way raises TypeError."""
    return REAL_GRU(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, True)


def _gru_other_meaning(*args):
    """Accepts the call but returns something else than nn.GRU would."""
    out, h = REAL_GRU(*args)
    return out * 0.5, h


def _model(impl: str) -> SERModel:
    torch.manual_seed(0)
    cfg = dataclasses.replace(ModelConfig.preset("small"), gru_dropout=0.0, transformer_dropout=0.0, gru_impl=impl)
    return SERModel(cfg, 4)


def _batch():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([40, 9, 23, 40, 1])
    x = torch.randn(len(lengths), 44, 257, generator=g)
    x = x * (torch.arange(44)[None, :] < lengths[:, None])[:, :, None]
    return x, lengths


def _run(model, x, lengths):
    """Embeddings and the gradients of a loss on them (input and every parameter)."""
    model.zero_grad()
    x = x.clone().requires_grad_()
    h = model.embed(x, lengths)
    h.pow(2).sum().backward()
    return h.detach(), x.grad, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("broken", ["missing", "new_signature", "other_meaning"])
def test_padded_gru_falls_back_to_nn_gru_when_the_private_call_is_unusable(monkeypatch, broken):
    x, lengths = _batch()
    model = _model("padded").train()
    monkeypatch.setattr(layers, "_PRIVATE_GRU_OK", None, raising=False)  # probe again in this test
    h_ref, gx_ref, grads_ref = _run(model, x, lengths)  # the private call, as today

    monkeypatch.setattr(layers, "_PRIVATE_GRU_OK", None, raising=False)
    gru = {"missing": None, "new_signature": _gru_new_signature, "other_meaning": _gru_other_meaning}[broken]
    monkeypatch.setattr(torch, "_VF", _VF(gru))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        h, gx, grads = _run(model, x, lengths)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-4)
    gru_grads = [name for name in grads if name.startswith("gru.")]
    assert len(gru_grads) == 8 * model.cfg.gru_layers  # every GRU weight and bias, both directions, got a gradient
    assert set(grads) == set(grads_ref)
    for name in grads_ref:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-5, rtol=1e-4, msg=name)
    for name in gru_grads:
        assert torch.isfinite(grads[name]).all() and grads[name].abs().sum() > 0, name
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "torch._VF.gru" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]  # one warning: the padded path now runs packed


def test_the_probe_runs_once_and_leaves_the_random_state_alone(monkeypatch):
    monkeypatch.setattr(layers, "_PRIVATE_GRU_OK", None, raising=False)
    calls = []

    def counting(*args):
        calls.append(1)
        return REAL_GRU(*args)

    monkeypatch.setattr(torch, "_VF", _VF(counting))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert layers.private_gru_ok() is True  # this PyTorch's private call matches nn.GRU
    torch.testing.assert_close(torch.rand(3), expected)  # the probe's nn.GRU init drew nothing from it
    assert len(calls) == 1
    x, lengths = _batch()
    with torch.no_grad():
        _model("padded").eval().embed(x, lengths)
    assert layers.private_gru_ok() is True and len(calls) == 1 + 2 * 2  # 2 layers x 2 directions, no new probe
