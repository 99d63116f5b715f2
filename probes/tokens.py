"""Prompts -> tokens -> forward pass, the same way for decoders and encoders.

Decoders (HookedTransformer) get BOS prepended and are right-padded; since attention is causal,
right padding never changes a real token's computation. Encoders (HookedEncoder/BERT) get
[CLS] ... [SEP] and an attention mask so padded keys are never attended to. Either way the
``attention_mask`` (1 = real token) tells every statistic which positions to ignore.

Shapes use the dimension names of docs/GLOSSARY.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from probes.models import LoadedModel


class Tokens(NamedTuple):
    """A tokenised, right-padded batch of prompts."""

    ids: torch.Tensor  # (batch, pos) long
    attention_mask: torch.Tensor  # (batch, pos) long, 1 = real token, 0 = padding
    lengths: torch.Tensor  # (batch,) long, number of real tokens per prompt
    str_tokens: list[list[str]]  # per prompt, its real tokens as strings

    @property
    def bool_mask(self) -> torch.Tensor:
        return self.attention_mask.bool()


def _check_prompts(prompts: str | Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts)
    if not prompts:
        raise ValueError("no prompts given: pass a string or a non-empty list of strings")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is a {type(p).__name__}, expected str")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty or whitespace only: give it some text")
    return prompts


def _pad_id(loaded: LoadedModel) -> int:
    tok = loaded.tokenizer
    for attr in ("pad_token_id", "eos_token_id", "bos_token_id"):
        value = getattr(tok, attr, None)
        if value is not None:
            return int(value)
    return 0


def _encode_one(loaded: LoadedModel, prompt: str) -> list[int]:
    tok = loaded.tokenizer
    if loaded.kind == "encoder":
        return list(tok(prompt, add_special_tokens=True)["input_ids"])
    ids = loaded.model.to_tokens(prompt, prepend_bos=True, truncate=False, move_to_device=False)
    return ids[0].tolist()


def tokenize(
    loaded: LoadedModel, prompts: str | Sequence[str], max_len: int | None = None
) -> Tokens:
    """Tokenise ``prompts`` (BOS for decoders, [CLS]/[SEP] for encoders), right-padded.

    Raises ``ValueError`` for an empty prompt or one longer than ``max_len`` (default: the
    model's context ``n_ctx``) instead of silently truncating it.
    """
    prompts = _check_prompts(prompts)
    limit = loaded.cfg.n_ctx if max_len is None else min(int(max_len), loaded.cfg.n_ctx)
    encoded = [_encode_one(loaded, p) for p in prompts]
    for i, ids in enumerate(encoded):
        if len(ids) > limit:
            raise ValueError(
                f"prompt {i} is {len(ids)} tokens long, more than the limit of {limit} "
                f"(model {loaded.name!r} has n_ctx={loaded.cfg.n_ctx}): shorten or split it"
            )
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), _pad_id(loaded), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, row in enumerate(encoded):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    str_tokens = [loaded.tokenizer.convert_ids_to_tokens(row) for row in encoded]
    return Tokens(ids, mask, mask.sum(1), [list(map(str, s)) for s in str_tokens])


def batches(tokens: Tokens, batch_size: int):
    """Yield ``Tokens`` slices of at most ``batch_size`` prompts, trimmed of all-pad columns."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, tokens.ids.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        width = int(tokens.lengths[sl].max())
        yield Tokens(
            tokens.ids[sl, :width], tokens.attention_mask[sl, :width], tokens.lengths[sl],
            tokens.str_tokens[sl],
        )


def forward(loaded: LoadedModel, tokens: Tokens, **kwargs) -> torch.Tensor:
    """Run the model on ``tokens`` with the right padding mask.

    Returns the decoder's logits (batch, pos, d_vocab), or the encoder's final hidden state
    (batch, pos, d_model) -- MiniLM's MLM head is not part of its checkpoint.
    Extra keyword arguments go to the decoder's forward (e.g. ``stop_at_layer``).
    """
    device = loaded.cfg.device
    ids = tokens.ids.to(device)
    mask = tokens.attention_mask.to(device)
    if loaded.kind == "encoder":
        return loaded.model.encoder_output(ids, None, mask)
    return loaded.model(ids, attention_mask=mask, **kwargs)


def sentence_embedding(loaded: LoadedModel, tokens: Tokens) -> torch.Tensor:
    """Mean-pooled, L2-normalised embedding of each prompt (all-MiniLM-L6-v2's pooling).

    Shape (batch, d_model). Padding positions are excluded from the mean.
    """
    hidden = forward(loaded, tokens)  # (batch, pos, d_model)
    return pool_embedding(hidden, tokens.attention_mask.to(hidden.device))


def pool_embedding(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over positions, L2-normalised: (batch, pos, d_model) -> (batch, d_model)."""
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, pos, 1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)
