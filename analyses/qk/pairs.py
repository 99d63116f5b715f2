"""Which (query, key) pairs a QK decomposition averages over: one rule per question asked.

- ``induction``: every query whose token occurred earlier in its prompt (position p < i - 1,
  the most recent such p), with the key p + 1, the token after that earlier occurrence: where
  an induction head should look. On the induction task these are the repeated copy's tokens.
- ``previous``: every query i >= 1 with the key i - 1 (previous-token heads).
- ``argmax``: the last query of each prompt with the key the head attends to most there (what
  drives the attention wherever it goes; on SmolLM2 that is often the BOS sink).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from probes.head_scores import repeat_targets

PAIR_RULES = ("induction", "previous", "argmax")


class QKPairs(NamedTuple):
    """(query, key) pairs of a token batch, one entry each."""

    batch: Tensor  # (pair,) long: prompt index
    query: Tensor  # (pair,) long: query position
    key: Tensor  # (pair,) long: key position (<= query)


def _induction(tokens: Tensor) -> QKPairs:
    batch, query, earlier = repeat_targets(tokens)
    if not len(batch):
        raise ValueError("pairs='induction' needs prompts with a repeated token (e.g. the "
                         "induction task); none of these prompts repeats one")
    return QKPairs(batch, query, earlier + 1)


def select_pairs(rule: str, tokens: Tensor, pattern: Tensor | None = None) -> QKPairs:
    """The pairs of ``rule`` (:data:`PAIR_RULES`) in ``tokens`` (batch, pos), unpadded.

    ``pattern`` (batch, pos, key_pos): the head's attention, needed by ``argmax`` only.
    """
    n, n_pos = tokens.shape
    if rule == "induction":
        return _induction(tokens)
    if rule == "previous":
        if n_pos < 2:
            raise ValueError("pairs='previous' needs prompts of at least 2 tokens")
        q = torch.arange(1, n_pos).repeat(n)
        return QKPairs(torch.arange(n).repeat_interleave(n_pos - 1), q, q - 1)
    if rule == "argmax":
        if pattern is None:
            raise ValueError("pairs='argmax' needs the head's attention pattern")
        last = torch.full((n,), n_pos - 1)
        return QKPairs(torch.arange(n), last, pattern[torch.arange(n), last].argmax(-1))
    raise ValueError(f"unknown pair rule {rule!r}; choose from {list(PAIR_RULES)}")
