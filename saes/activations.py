"""Activation sources for attention SAEs: `hook_z` of one layer, real tokens only.

    z = collect_hook_z(loaded, tokens, layer)        # ZActs: (n, head, d_head) + where from
    buf = activation_buffer(loaded, layer, ActivationConfig(n_tokens=100_000))  # (n, d_in)
    batches = ShuffledBatches(buf, batch_tokens=1024, seed=0)   # SAE-Lens DataProvider

Why not SAE-Lens' `ActivationsStore`: it reads Hugging Face datasets through
`HookedTransformer.run_with_cache` and knows neither `HookedEncoder` (MiniLM needs its
padding mask) nor attnlab's corpora and activation shards. Its trainer only needs an iterator
of (batch, d_in) tensors (`sae_lens.training.types.DataProvider`), which is what
`ShuffledBatches` is; it is also resumable (the order depends only on seed and position).

Padding positions never become training data: every row comes from a position whose
attention mask is 1. Shapes use the dimension names of docs/GLOSSARY.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from probes.hooks import hook_layer, record
from probes.models import LoadedModel
from probes.tokens import Tokens, batches, forward

log = logging.getLogger(__name__)


def hook_z_name(layer: int) -> str:
    return f"blocks.{int(layer)}.attn.hook_z"


class ZShape(NamedTuple):
    """Shape of one layer's `hook_z` per token."""

    n_heads: int
    d_head: int

    @property
    def d_in(self) -> int:
        return self.n_heads * self.d_head


def z_shape(model, layer: int) -> ZShape:
    """(n_heads, d_head) of `model`'s attention layer `layer`; ValueError if out of range."""
    n_layers = int(model.cfg.n_layers)
    if not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ValueError(f"layer must be an int in [0, {n_layers}), got {layer!r}")
    return ZShape(int(model.cfg.n_heads), int(model.cfg.d_head))


def check_sae_fits(sae, model, layer: int) -> ZShape:
    """Raise a clear ValueError when the SAE's d_in does not match the layer's hook_z."""
    shape = z_shape(model, layer)
    d_in = int(sae.cfg.d_in)
    if d_in != shape.d_in:
        raise ValueError(
            f"SAE d_in={d_in} does not match {hook_z_name(layer)} of this model "
            f"({shape.n_heads} heads x {shape.d_head} d_head = {shape.d_in}): use an SAE "
            "trained on this model's hook_z, or train one with `attnlab sae train`"
        )
    hook = sae.cfg.metadata.get("hook_name")
    if hook and not str(hook).endswith("hook_z"):
        raise ValueError(f"SAE was trained on {hook!r}, not an attention hook_z")
    return shape


class ZActs(NamedTuple):
    """hook_z of real (non-padding) tokens, with where each row came from."""

    z: Tensor  # (n, head, d_head)
    prompt_idx: Tensor  # (n,) long, index of the prompt in the tokenised batch
    pos: Tensor  # (n,) long, token position in its prompt


def record_tokens(loaded: LoadedModel, tokens: Tokens, names: list[str]) -> dict[str, Tensor]:
    """The activations at `names` in one no-grad forward pass of `tokens` (with its mask).

    A decoder's pass stops after the last block that `names` reach (nothing above is read).
    """
    kw = {}
    if loaded.kind == "decoder":
        kw["stop_at_layer"] = 1 + max(hook_layer(n) for n in names)
    with torch.no_grad():
        return record(loaded.model, names, lambda: forward(loaded, tokens, **kw)).acts


def collect_hook_z(
    loaded: LoadedModel, tokens: Tokens, layer: int, batch_size: int = 32
) -> ZActs:
    """hook_z of `layer` at every real token of `tokens` (padding dropped)."""
    z_shape(loaded.model, layer)
    zs, prompts, positions = [], [], []
    offset = 0
    for tb in batches(tokens, batch_size):
        z = record_tokens(loaded, tb, [hook_z_name(layer)])[hook_z_name(layer)]
        mask = tb.attention_mask.bool().to(z.device)  # (batch, pos)
        b_idx, p_idx = mask.nonzero(as_tuple=True)
        zs.append(z[b_idx, p_idx].float().cpu())  # (n, head, d_head)
        prompts.append(b_idx.cpu() + offset)
        positions.append(p_idx.cpu())
        offset += tb.ids.shape[0]
    return ZActs(torch.cat(zs), torch.cat(prompts), torch.cat(positions))


class ShuffledBatches(Iterator[Tensor]):
    """Endless, deterministic, resumable shuffled batches over an in-memory buffer.

    Epoch e visits the rows in the order `randperm(n, generator seeded by (seed, e))`; the
    stream depends only on (seed, position), so `start=n_samples_seen` resumes it exactly.
    """

    def __init__(self, buffer: Tensor, batch_tokens: int, seed: int = 0, start: int = 0):
        if buffer.ndim != 2 or buffer.shape[0] < 1:
            raise ValueError(f"buffer must be a non-empty (n, d_in) tensor, got {buffer.shape}")
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
        self.buffer, self.batch_tokens, self.seed = buffer, int(batch_tokens), int(seed)
        self.position = int(start)  # samples emitted so far (over all epochs)
        self._epoch, self._perm = -1, None

    def _order(self, epoch: int) -> Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.buffer.shape[0], generator=g), epoch
        return self._perm

    def __next__(self) -> Tensor:
        n = self.buffer.shape[0]
        rows = []
        need = self.batch_tokens
        while need:
            epoch, at = divmod(self.position, n)
            take = min(need, n - at)
            rows.append(self._order(epoch)[at : at + take])
            self.position += take
            need -= take
        return self.buffer[torch.cat(rows)]  # (n, d_in), n = batch_tokens


def activation_buffer_from_tokens(
    loaded: LoadedModel, layer: int, tokens: Tokens, n_tokens: int, prompt_batch: int
) -> Tensor:
    """(n, d_in) float32 hook_z rows of real tokens, at most `n_tokens` of them.

    Under torchrun each rank runs its contiguous block of the prompts and the rows are
    gathered in rank order (= prompt order), so every rank gets the one-process buffer.
    """
    from probes.distributed import all_gather, rank_info, shard_range

    if rank_info().distributed:
        sl = shard_range(tokens.ids.shape[0]).as_slice()
        mine = Tokens(tokens.ids[sl], tokens.attention_mask[sl], tokens.lengths[sl],
                      tokens.str_tokens[sl])
        z = torch.cat(all_gather(collect_hook_z(loaded, mine, layer, prompt_batch).z))
    else:
        z = collect_hook_z(loaded, tokens, layer, prompt_batch).z
    if z.shape[0] < n_tokens:
        log.info("corpus gave %d tokens (< %d asked); training repeats them", z.shape[0],
                 n_tokens)
    return z[:n_tokens].reshape(min(n_tokens, z.shape[0]), -1).contiguous()
