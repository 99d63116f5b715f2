"""Patching an encoder (MiniLM) with an embedding-similarity metric.

The metric is the cosine of the mean-pooled sentence embedding to a target embedding.

An encoder has no next-token logit to compare, so the metric is the cosine similarity of the
mean-pooled sentence embedding (all-MiniLM-L6-v2's pooling, ``probes.tokens.pool_embedding``)
to the clean sentence's embedding: 1 on the clean run, lower on the corrupted one, and the
usual 0..1 normalisation applies. Sentence pairs must tokenise to the same length (e.g. one
word swapped for another single-token word).

    >>> lm = load_model("minilm")
    >>> pair = sentence_pair(lm, ["the cat sat on the mat"], ["the dog sat on the mat"])
    >>> patch(lm, pair, PatchingConfig("z")).table
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from analyses.causal.patching import PatchPair
from probes.tokens import pool_embedding, sentence_embedding, tokenize


def embedding_cosine(target: torch.Tensor, attention_mask: torch.Tensor):
    """Metric: per-prompt cosine of the pooled last hidden state to ``target`` (batch, d_model)."""

    def metric(hidden: torch.Tensor) -> torch.Tensor:  # (batch, pos, d_model) -> (batch,)
        pooled = pool_embedding(hidden, attention_mask.to(hidden.device))
        return (pooled * torch.nn.functional.normalize(target, dim=-1).to(pooled)).sum(-1)

    return metric


def sentence_pair(loaded, clean: Sequence[str], corrupted: Sequence[str],
                  task: str = "sentences") -> PatchPair:
    """A :class:`PatchPair` of token-aligned sentence pairs with the embedding-cosine metric."""
    if loaded.kind != "encoder":
        raise ValueError(f"sentence_pair is for encoders; {loaded.name!r} is a {loaded.kind}: "
                         "use analyses.causal.patching.pair_from_task for decoders")
    if len(clean) != len(corrupted):
        raise ValueError(f"{len(clean)} clean but {len(corrupted)} corrupted sentences")
    tc, tr = tokenize(loaded, clean), tokenize(loaded, corrupted)
    bad = [i for i, (a, b) in enumerate(zip(tc.lengths, tr.lengths)) if int(a) != int(b)]
    if bad or tc.ids.shape != tr.ids.shape:
        raise ValueError(
            f"sentence pairs {bad} tokenise to different lengths: swap words for words of the "
            "same token count so that positions align")
    if not torch.equal(tc.attention_mask, tr.attention_mask):
        raise ValueError("clean and corrupted padding masks differ: pair sentences of equal "
                         "token length")
    with torch.no_grad():
        target = sentence_embedding(loaded, tc)  # (batch, d_model)
    return PatchPair(tc.ids, tr.ids, embedding_cosine(target, tc.attention_mask), task=task,
                     metric_name="embedding_cosine", attention_mask=tc.attention_mask)
