"""Default token corpora for SAE training and evaluation, per model.

- `minilm` (encoders): the built-in English sentences (`data.sentences`), split
  deterministically into a train part and a held-out part (every 5th sentence).
- `organism`: fresh rows of the organism's own training distribution (all four task
  families, `data.organism.heldout`), drawn with seeds its training never used.
- any other model: pass your own prompts (`prompts=`).

    tokens = corpus_tokens(loaded, n_tokens=100_000, seed=0)              # train split
    tokens = corpus_tokens(loaded, n_tokens=20_000, seed=1, split="heldout")
"""

from __future__ import annotations

import random

from probes.models import LoadedModel
from probes.tokens import Tokens, tokenize

SPLITS = ("train", "heldout")
HELDOUT_EVERY = 5  # minilm: sentence i is held out when i % 5 == 4


def minilm_sentences(split: str) -> list[str]:
    """The built-in sentences of one split (fixed order)."""
    from data.sentences import builtin_sentences

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    sents = builtin_sentences()
    held = split == "heldout"
    return [s for i, s in enumerate(sents) if (i % HELDOUT_EVERY == HELDOUT_EVERY - 1) == held]


def organism_tokens(split: str, seed: int = 0, *, n_rows: int | None = None,
                    n_tokens: int | None = None) -> Tokens:
    """Held-out rows of the organism's training mix (`data.organism.heldout`), as Tokens.

    Splits "train"/"heldout" (SAE corpora, `n_tokens`) and "calibration"/"eval" (the
    redundancy study, `n_rows`) come from seeds the organism's training never used.
    """
    from data.organism.heldout import heldout_rows, training_setup

    batch = heldout_rows(split, seed, n_rows=n_rows, n_tokens=n_tokens)
    mask = batch.mask.long()  # (batch, pos)
    vocab = training_setup().world.vocab
    str_tokens = [[vocab[i] for i in row[: int(n)]] for row, n in
                  zip(batch.tokens.tolist(), mask.sum(1).tolist())]
    return Tokens(batch.tokens, mask, mask.sum(1), str_tokens)


def corpus_tokens(
    loaded: LoadedModel, n_tokens: int, seed: int = 0, max_len: int | None = None,
    split: str = "train", prompts: list[str] | None = None,
) -> Tokens:
    """Tokenised prompts with about `n_tokens` real tokens (fewer if the corpus is smaller)."""
    if prompts is None:
        if loaded.name == "minilm" or loaded.kind == "encoder":
            prompts = minilm_sentences(split)
            random.Random(seed).shuffle(prompts)
        elif loaded.name == "organism":
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            return _trim(organism_tokens(split, seed, n_tokens=n_tokens), n_tokens)
        else:
            raise ValueError(
                f"no default corpus for model {loaded.name!r}: pass prompts (a list of "
                "strings, e.g. from data.sentences.load_prompts(path))"
            )
    return _trim(tokenize(loaded, prompts, max_len=max_len), n_tokens)


def _trim(tokens: Tokens, n_tokens: int) -> Tokens:
    """The first prompts of `tokens` holding about `n_tokens` real tokens."""
    keep = min(int((tokens.lengths.cumsum(0) < n_tokens).sum()) + 1, tokens.ids.shape[0])
    return Tokens(tokens.ids[:keep], tokens.attention_mask[:keep], tokens.lengths[:keep],
                  tokens.str_tokens[:keep])
