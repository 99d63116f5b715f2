"""Build the organism's TransformerLens model and feed it training batches.

``build_model`` turns a :class:`ModelConfig` into a ``HookedTransformer`` (LayerNorm, GELU,
rotary or learned positions as the config says). ``make_batch`` generates training batch
``step`` of run ``seed`` from its own seeded RNG, so a resumed run sees exactly the batches it
would have seen.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from data.organism.config import ModelConfig
from data.organism.corpus import TRAIN_FAMILIES, training_row
from data.organism.world import BOS, PAD, World


def hooked_config(cfg: ModelConfig, d_vocab: int) -> HookedTransformerConfig:
    """The TransformerLens config of the organism architecture."""
    return HookedTransformerConfig(
        n_layers=cfg.n_layers, d_model=cfg.d_model, n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads, d_mlp=cfg.d_mlp, n_ctx=cfg.n_ctx, d_vocab=d_vocab,
        act_fn="gelu", normalization_type="LN",
        positional_embedding_type="standard" if cfg.positional == "learned" else "rotary",
        rotary_dim=cfg.d_model // cfg.n_heads if cfg.positional == "rotary" else None,
        original_architecture="attnlab-organism", model_name="organism", device="cpu",
    )


def build_model(cfg: ModelConfig, d_vocab: int, seed: int) -> HookedTransformer:
    """A freshly initialised organism (initial weights seeded by ``seed``)."""
    torch.manual_seed(seed)
    return HookedTransformer(hooked_config(cfg, d_vocab))


class Batch(NamedTuple):
    tokens: torch.Tensor  # (batch, pos) long, <bos> first, right-padded with <pad>
    mask: torch.Tensor  # (batch, pos) bool, True where a real token is


def make_batch(
    step: int, seed: int, world: World, mix: dict[str, float], batch_size: int, n_ctx: int,
    reasoning_rows: str = "dense",
) -> Batch:
    """Training batch number ``step``: rows of one task family each, padded to the longest.

    ``reasoning_rows``: how reasoning rows are written (``corpus.REASONING_ROWS``).
    """
    rng = random.Random(f"batch-{seed}-{step}")
    word_to_id = world.word_ids
    families = rng.choices(TRAIN_FAMILIES, weights=[mix.get(f, 0.0) for f in TRAIN_FAMILIES],
                           k=batch_size)
    rows = [[BOS, *training_row(rng, world, f, n_ctx - 1, reasoning_rows)]
            for f in families]
    width = max(len(r) for r in rows)
    ids = [[word_to_id[w] for w in r] + [word_to_id[PAD]] * (width - len(r)) for r in rows]
    tokens = torch.tensor(ids, dtype=torch.long)  # (batch, pos)
    mask = torch.tensor([[i < len(r) for i in range(width)] for r in rows])
    return Batch(tokens, mask)

