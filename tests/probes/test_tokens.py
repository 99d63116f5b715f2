"""Prompt -> token handling: padding, masks, BOS, and the errors for bad prompts."""

from __future__ import annotations

import pytest
import torch

from probes.tokens import batches, forward, pool_embedding, tokenize


def test_mixed_lengths_are_right_padded_with_mask(minilm):
    t = tokenize(minilm, ["one two three four five", "hi"])
    assert t.ids.shape == (2, 7)
    assert t.lengths.tolist() == [7, 3]
    assert t.attention_mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert t.ids[1, 3:].eq(minilm.tokenizer.pad_token_id).all()
    assert t.str_tokens[1] == ["[CLS]", "hi", "[SEP]"]


def test_padding_does_not_change_encoder_output(minilm):
    alone = forward(minilm, tokenize(minilm, ["hi there"]))
    batch = forward(minilm, tokenize(minilm, ["hi there", "a much longer sentence than the other"]))
    n = alone.shape[1]
    assert torch.allclose(alone[0], batch[0, :n], atol=1e-5)


@pytest.mark.parametrize("prompts", [[], "", "   ", ["ok", ""]])
def test_empty_prompts_are_rejected(minilm, prompts):
    with pytest.raises(ValueError, match="no prompts|empty"):
        tokenize(minilm, prompts)


def test_too_long_prompt_is_rejected_not_truncated(minilm):
    with pytest.raises(ValueError, match="tokens long, more than the limit of 512"):
        tokenize(minilm, "word " * 600)
    with pytest.raises(ValueError, match="limit of 4"):
        tokenize(minilm, "one two three", max_len=4)


def test_non_string_prompt(minilm):
    with pytest.raises(TypeError, match="prompt 1 is a int"):
        tokenize(minilm, ["fine", 3])


def test_decoder_gets_bos(organism):
    t = tokenize(organism, ["when", "when and"])
    bos = organism.tokenizer.bos_token_id
    assert t.ids[:, 0].eq(bos).all()
    assert t.lengths.tolist() == [2, 3]


def test_batches_trim_padding(minilm):
    t = tokenize(minilm, ["a b c d e f g", "a", "b"])
    chunks = list(batches(t, 2))
    assert [c.ids.shape for c in chunks] == [(2, 9), (1, 3)]
    with pytest.raises(ValueError):
        next(batches(t, 0))


def test_pool_embedding_ignores_padding():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    out = pool_embedding(hidden, mask)
    assert torch.allclose(out, torch.tensor([[2**-0.5, 2**-0.5]]))
