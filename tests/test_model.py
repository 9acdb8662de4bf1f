"""The thesis encoder: shapes, exact length/padding handling, heads, parameter counts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ser_cl.models import PRESETS, ModelConfig, SERModel
from ser_cl.models.encoder import MaskedBatchNorm2d

SMALL = ModelConfig.preset("small")
THESIS = ModelConfig.preset("thesis")


def _model(cfg=SMALL, n_classes=4, seed=0, **overrides):
    torch.manual_seed(seed)
    return SERModel(dataclasses.replace(cfg, **overrides), n_classes)


def _padded(lengths, n_freq=257, max_len=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    max_len = max_len or max(lengths)
    x = torch.randn(len(lengths), max_len, n_freq, generator=g)
    lengths = torch.tensor(lengths)
    x = x * (torch.arange(max_len)[None, :] < lengths[:, None])[:, :, None]
    return x, lengths


def test_shapes_and_heads():
    model = _model().eval()
    x, lengths = _padded([37, 20, 5])
    h = model.embed(x, lengths)
    assert h.shape == (3, 64) and h.dtype == torch.float32
    assert model.forward(x, lengths).shape == (3, 4)
    assert model.classify(h).shape == (3, 4)
    z = model.contrastive(h)
    assert z.shape == (3, 64)
    torch.testing.assert_close(z, nn.functional.normalize(h, dim=-1))
    frames, out_lengths = model.frames(x, lengths)
    assert frames.shape == (3, 10, 64) and out_lengths.tolist() == [10, 5, 2]


def test_normalize_and_projection_head():
    model = _model(normalize=True, proj_dim=16).eval()
    x, lengths = _padded([30, 11])
    h = model.embed(x, lengths)
    torch.testing.assert_close(h.norm(dim=-1), torch.ones(2))
    z = model.contrastive(h)
    assert z.shape == (2, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2))
    unnormalised = _model(normalize=False).eval().embed(x, lengths)
    assert not torch.allclose(unnormalised.norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("cfg", [SMALL, THESIS], ids=["small", "thesis"])
def test_utterance_alone_equals_utterance_in_padded_batch(cfg):
    """The key masking test: padding never changes an utterance's embedding (eval mode)."""
    model = _model(cfg).eval()
    lengths = [61, 1, 2, 3, 17, 40]
    x, lens = _padded(lengths, max_len=70)
    x[:, 65:] = 3.0  # even garbage beyond every length must not leak in
    with torch.no_grad():
        batch = model.embed(x, lens)
        for i, n in enumerate(lengths):
            alone = model.embed(x[i : i + 1, :n], lens[i : i + 1])
            torch.testing.assert_close(alone[0], batch[i], atol=1e-5, rtol=1e-5)


def test_training_mode_output_does_not_depend_on_padding_amount():
    """Masked BatchNorm: batch statistics come from the valid frames only."""
    model = _model(gru_dropout=0.0, transformer_dropout=0.0).train()
    x, lengths = _padded([33, 20, 9])
    x_more = torch.cat([x, torch.zeros(3, 27, 257)], dim=1)  # same batch, 27 more padded frames
    torch.testing.assert_close(model.embed(x, lengths), model.embed(x_more, lengths), atol=1e-5, rtol=1e-5)
    plain = _model(gru_dropout=0.0, transformer_dropout=0.0, masked_batchnorm=False).train()
    assert not torch.allclose(plain.embed(x, lengths), plain.embed(x_more, lengths), atol=1e-5)


def test_masked_batchnorm_matches_batchnorm_over_valid_frames():
    torch.manual_seed(0)
    bn = MaskedBatchNorm2d(3).train()
    ref = nn.BatchNorm2d(3).train()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    ref.load_state_dict(bn.state_dict())
    x = torch.randn(2, 3, 5, 9) * 3 + 1
    lengths = torch.tensor([9, 4])
    valid = torch.arange(9)[None, :] < lengths[:, None]
    y = bn(x, valid)
    joined = torch.cat([x[0, :, :, :9], x[1, :, :, :4]], dim=-1).unsqueeze(0)  # valid frames only
    y_ref = ref(joined)
    torch.testing.assert_close(torch.cat([y[0], y[1, :, :, :4]], dim=-1), y_ref[0])
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked.item() == 1
    bn.eval()
    ref.eval()
    torch.testing.assert_close(bn(x, valid), ref(x))


def test_output_lengths_match_brute_force_conv_sizes():
    for cfg in (SMALL, THESIS):
        model = _model(cfg).eval()
        for t in [1, 2, 3, 4, 5, 6, 7, 10, 11, 20, 21, 22, 41, 100, 101, 303]:
            with torch.no_grad():
                y1 = model.conv1.conv(torch.zeros(1, 1, cfg.n_freq, t))
                y2 = model.conv2.conv(y1)
            assert model.conv1.output_length(torch.tensor([t])).item() == y1.shape[-1]
            assert model.output_lengths(torch.tensor([t])).item() == y2.shape[-1] >= 1
            assert (y1.shape[2], y2.shape[2]) == cfg.conv_freq_bins
            assert y2.shape[1] * y2.shape[2] == cfg.gru_input_size
    assert THESIS.conv_freq_bins == (109, 45) and THESIS.gru_input_size == 64 * 45


def test_gradients_flow_and_padding_gets_no_gradient():
    model = _model(proj_dim=8).train()
    x, lengths = _padded([25, 12, 7])
    x.requires_grad_(True)
    h = model.embed(x, lengths)
    loss = model.classify(h).logsumexp(-1).sum() + model.contrastive(h).sum()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(x.grad[i, n:] == 0)
        assert x.grad[i, :n].abs().sum() > 0


def _brute_force_parameter_count(cfg: ModelConfig, n_classes: int) -> int:
    c, d, hid = cfg.conv_channels, cfg.embed_dim, cfg.gru_hidden
    (kf1, kt1), (kf2, kt2) = cfg.conv1_kernel, cfg.conv2_kernel
    f1 = (cfg.n_freq - kf1) // 2 + 1
    f2 = (f1 - kf2) // 2 + 1
    convs = (c * kf1 * kt1 + c) + 2 * c + (c * c * kf2 * kt2 + c) + 2 * c
    gru, inp = 0, c * f2
    for _ in range(cfg.gru_layers):
        gru += 2 * 3 * (hid * inp + hid * hid + 2 * hid)  # 2 directions x 3 gates
        inp = 2 * hid
    attention = 4 * d * d + 4 * d
    feed_forward = d * cfg.d_ff + cfg.d_ff + cfg.d_ff * d + d
    transformer = cfg.transformer_layers * (attention + feed_forward + 2 * 2 * d)
    heads = d * n_classes + n_classes
    if cfg.proj_dim:
        heads += d * d + d + d * cfg.proj_dim + cfg.proj_dim
    return convs + gru + transformer + heads


def test_parameter_counts_and_partition():
    for cfg in (THESIS, SMALL, dataclasses.replace(SMALL, proj_dim=12, transformer_layers=2)):
        model = SERModel(cfg, 4)
        total = sum(p.numel() for p in model.parameters())
        assert total == _brute_force_parameter_count(cfg, 4)
        enc = {id(p) for p in model.encoder_parameters()}
        head = {id(p) for p in model.head_parameters()}
        assert enc.isdisjoint(head)
        assert enc | head == {id(p) for p in model.parameters()}
        assert {id(p) for p in model.classifier.parameters()} <= head
        assert model.n_parameters()["total"] == total
    thesis_total = sum(p.numel() for p in SERModel(THESIS, 4).parameters())
    print(f"thesis model parameters (4 classes): {thesis_total}")
    assert thesis_total == 4_137_924
    small_total = sum(p.numel() for p in SERModel(SMALL, 4).parameters())
    assert small_total * 10 < thesis_total


def test_runs_under_cpu_bfloat16_autocast():
    model = _model().train()
    x, lengths = _padded([30, 14])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        h = model.embed(x, lengths)
        logits = model.classify(h)
    assert h.dtype == torch.float32 and torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert model.conv1.conv.weight.grad is not None


def test_config_presets_and_validation():
    assert ModelConfig(**PRESETS["thesis"]) == ModelConfig() == ModelConfig.preset("thesis")
    assert ModelConfig(**dict(PRESETS["small"], normalize=True)) == ModelConfig.preset("small", normalize=True)
    cfg = ModelConfig.from_dict({"preset": "small", "conv1_kernel": [41, 21], "normalize": True})
    assert cfg.conv1_kernel == (41, 21) and cfg.normalize and cfg.conv_channels == 16
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model option"):
        ModelConfig.from_dict({"gru_hiden": 3})
    with pytest.raises(ValueError):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError):
        ModelConfig(gru_hidden=30, n_heads=8)  # d_model 60 not divisible by 8
    with pytest.raises(ValueError):
        ModelConfig(n_freq=40)  # too few bins for the frequency kernels


def test_bad_inputs_are_rejected():
    model = _model().eval()
    x, lengths = _padded([10, 5])
    with pytest.raises(ValueError):
        model.embed(x, torch.tensor([10, 0]))
    with pytest.raises(ValueError):
        model.embed(x, torch.tensor([11, 5]))
    with pytest.raises(ValueError):
        model.embed(x[:, :, :100], lengths)


def test_input_norm_utterance_is_opt_in_padding_safe_and_scale_invariant():
    """input_norm="utterance" standardises each utterance per bin; the default stays "none"."""
    assert ModelConfig().input_norm == "none" and SMALL.input_norm == "none"
    with pytest.raises(ValueError, match="input_norm"):
        ModelConfig(input_norm="per-speaker")
    model = _model(input_norm="utterance").eval()
    lengths = [40, 1, 9, 23]
    x, lens = _padded(lengths, max_len=45)
    x[:, 42:] = 5.0  # garbage beyond every length must not leak in
    with torch.no_grad():
        batch = model.embed(x, lens)
        for i, n in enumerate(lengths):
            alone = model.embed(x[i : i + 1, :n], lens[i : i + 1])
            torch.testing.assert_close(alone[0], batch[i], atol=1e-5, rtol=1e-5)
        # a per-bin gain and offset (e.g. a channel / loudness change) no longer matters
        gain, offset = torch.rand(257) + 0.5, torch.randn(257) * 3
        shifted = model.embed(x[:1, :40] * gain + offset, lens[:1])
        torch.testing.assert_close(shifted, batch[:1], atol=1e-4, rtol=1e-4)
        assert not torch.allclose(_model().eval().embed(x[:1, :40] * gain + offset, lens[:1]),
                                  _model().eval().embed(x[:1, :40], lens[:1]), atol=1e-3)


def test_padded_gru_equals_packed_gru_and_ignores_padding():
    """gru_impl="padded" (per-length reversal for the backward direction) gives the packed GRU's
    embeddings with the same weights, in train mode with gradients too, and stays padding-safe."""
    lengths = [40, 37, 9, 23, 40, 1]
    x, lens = _padded(lengths, max_len=44)
    x[:, 42:] = 3.0  # garbage beyond every length
    packed = _model(gru_dropout=0.0, transformer_dropout=0.0).train()
    padded = _model(gru_dropout=0.0, transformer_dropout=0.0, gru_impl="padded").train()
    padded.load_state_dict(packed.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ha, hb = packed.embed(xa, lens), padded.embed(xb, lens)
    torch.testing.assert_close(hb, ha, atol=1e-5, rtol=1e-5)
    ha.pow(2).sum().backward()
    hb.pow(2).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-5, rtol=1e-4)
    # A conv bias that feeds BatchNorm has a gradient of exactly 0; what the two GRUs give there is
    # float rounding, of the order of eps x the largest gradient (~20 here), not a difference.
    scale = max(p.grad.abs().max().item() for p in packed.parameters() if p.grad is not None)
    for (name, pa), pb in zip(packed.named_parameters(), padded.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, atol=max(1e-5, 2e-6 * scale), rtol=1e-4, msg=name)
    padded.eval()
    with torch.no_grad():
        batch = padded.embed(x, lens)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(padded.embed(x[i:i + 1, :n], lens[i:i + 1])[0], batch[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["attention", "stats"])
def test_pooling_options_ignore_padding(pooling):
    model = _model(pooling=pooling).eval()
    lengths = [30, 7, 18]
    x, lens = _padded(lengths, max_len=33)
    x[:, 31:] = 4.0
    with torch.no_grad():
        batch = model.embed(x, lens)
        assert batch.shape == (3, model.embed_dim)
        for i, n in enumerate(lengths):
            torch.testing.assert_close(model.embed(x[i:i + 1, :n], lens[i:i + 1])[0], batch[i], atol=1e-5, rtol=1e-5)


def test_stats_pooling_is_mean_and_std_of_the_frames():
    model = _model(pooling="stats").eval()
    x, lens = _padded([25, 12], max_len=25)
    with torch.no_grad():
        frames, out_len = model.frames(x, lens)
        h = model.embed(x, lens)
    for i in range(2):
        valid = frames[i, : int(out_len[i])]
        want = torch.cat([valid.mean(0), torch.sqrt(valid.var(0, unbiased=False) + 1e-5)])
        torch.testing.assert_close(h[i], want, atol=1e-5, rtol=1e-5)


def test_global_input_norm_uses_the_stored_statistics():
    model = _model(input_norm="global").eval()
    mean, std = torch.randn(257), torch.rand(257) + 0.5
    model.set_input_stats(mean, std)
    ref = _model().eval()
    x, lens = _padded([20], max_len=20)
    with torch.no_grad():  # same weights: the normalised model on x == the plain one on (x - mean) / std
        ref.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("input_")})
        torch.testing.assert_close(model.embed(x, lens), ref.embed((x - mean) / std, lens), atol=1e-5, rtol=1e-5)
    assert {"input_mean", "input_std"} <= set(model.state_dict())
