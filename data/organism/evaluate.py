"""Encode evaluation items as tensors and score a model on them (no TransformerLens needed).

All items of one family have the same length, so a list of items becomes plain ``(batch, pos)``
tensors; the scored position is the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from data.organism.corpus import Item
from data.organism.vocab import encode_words


class ItemTensors(NamedTuple):
    clean: torch.Tensor  # (batch, pos) long, <bos> first
    corrupted: torch.Tensor  # (batch, pos) long
    answer: torch.Tensor  # (batch,) long: correct next token of the clean prompt
    corrupted_answer: torch.Tensor  # (batch,) long: correct next token of the corrupted prompt


def encode_items(items: Sequence[Item], word_to_id: dict[str, int]) -> ItemTensors:
    """Strictly encode items (unknown words raise); all prompts must share one length."""
    if not items:
        raise ValueError("no items to encode")
    lengths = {len(it.prompt) for it in items}
    if len(lengths) != 1:
        raise ValueError(f"items have different prompt lengths {sorted(lengths)}; group them")
    clean = [encode_words(it.prompt, word_to_id) for it in items]
    corrupted = [encode_words(it.corrupted_prompt, word_to_id) for it in items]
    answers = [encode_words([it.answer], word_to_id, bos=False)[0] for it in items]
    c_answers = [encode_words([it.corrupted_answer], word_to_id, bos=False)[0] for it in items]
    return ItemTensors(torch.tensor(clean), torch.tensor(corrupted), torch.tensor(answers),
                       torch.tensor(c_answers))


@torch.no_grad()
def item_accuracy(
    forward: Callable[[torch.Tensor], torch.Tensor], tensors: ItemTensors, batch_size: int = 256
) -> float:
    """Top-1 accuracy of ``forward`` (tokens -> logits) at the last position of clean prompts."""
    hits = 0
    for start in range(0, len(tensors.answer), batch_size):
        logits = forward(tensors.clean[start : start + batch_size])  # (batch, pos, d_vocab)
        pred = logits[:, -1].argmax(-1)
        hits += (pred == tensors.answer[start : start + batch_size]).sum().item()
    return hits / len(tensors.answer)
