"""data.metrics.next_token_nll, the one next-token cross-entropy, vs torch's cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from data.metrics import mean_next_token_nll, next_token_nll


def _right_padded(seed: int = 0, batch: int = 4, width: int = 9, d_vocab: int = 11):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, width, d_vocab, generator=gen)  # (batch, pos, d_vocab)
    ids = torch.randint(1, d_vocab, (batch, width), generator=gen)  # (batch, pos)
    lengths = torch.tensor([width, 2, 5, 7])[:batch]
    mask = torch.arange(width)[None, :] < lengths[:, None]  # (batch, pos) bool
    return logits, ids * mask, mask, lengths


def test_matches_cross_entropy_over_real_targets():
    logits, ids, mask, lengths = _right_padded()
    target = ids[:, 1:].masked_fill(~mask[:, 1:], -100)  # -100: ignored by cross_entropy
    want = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1),
                           reduction="sum")
    got = next_token_nll(logits, ids, mask.long())
    assert got.count == int((lengths - 1).sum())
    assert got.total.dtype == torch.float64
    assert float(got.total) == pytest.approx(float(want), rel=1e-6)
    assert float(got.mean) == pytest.approx(float(want) / got.count, rel=1e-6)


def test_padding_never_counts_and_half_precision_is_upcast():
    logits, ids, mask, _ = _right_padded(seed=1)
    noisy = logits.clone()
    noisy[~mask] = 1e4  # logits at padded positions must not matter
    other_ids = ids.masked_fill(~mask, 3)  # nor the pad id
    ref = next_token_nll(logits, ids, mask)
    got = next_token_nll(noisy, other_ids, mask)
    assert got.count == ref.count and float(got.total) == pytest.approx(float(ref.total))
    half = next_token_nll(logits.half(), ids, mask)
    assert float(half.total) == pytest.approx(float(ref.total), rel=1e-2)


def test_mean_is_a_differentiable_training_loss():
    logits, ids, mask, _ = _right_padded(seed=2)
    logits.requires_grad_(True)
    loss = mean_next_token_nll(logits, ids, mask)
    loss.backward()
    assert logits.grad is not None and logits.grad[~mask].abs().max() == 0
    ref = logits.detach().clone().requires_grad_(True)
    keep = mask[:, 1:]
    nll = -ref[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    nll[keep].mean().backward()
    torch.testing.assert_close(logits.grad, ref.grad)
