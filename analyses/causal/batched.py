"""The engine of batched exact activation patching: many patches in one forward pass.

``transformer_lens.patching`` runs one full forward pass per patched component. Here the rows
of one batched pass each patch a different component: a chunk of ``patch`` patches over a
dataset of ``batch`` prompt pairs is one forward pass of ``rows = patch * batch`` rows (row
``g * batch + b`` is prompt ``b`` under patch ``g``). Patches at layer ``L`` leave layers
``< L`` unchanged, so the pass starts at layer ``L`` from the cached residual stream of the
baseline run (TransformerLens' ``start_at_layer``), and chunks are sized to a memory budget.

A patch is a boolean mask over one activation (without its batch axis): masked entries take
the source run's value, the rest keep the patched run's own value. This covers every
TransformerLens patch setter (layer/pos, layer/head, layer/pos/head, layer/head/dest_pos).

The patch is a replace hook of :func:`probes.hooks.scoped_hooks` (scoped to one chunk's pass).

Shapes use the dimension names of docs/GLOSSARY.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from probes.hooks import scoped_hooks

# ----------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class Runner:
    """Runs a HookedTransformer (decoder) or HookedEncoder from any layer to its output.

    The output is the logits (batch, pos, d_vocab) for a decoder, the final hidden state
    (batch, pos, d_model) for an encoder (MiniLM's MLM head is not in its checkpoint).
    """

    model: object  # HookedTransformer | HookedEncoder
    encoder: bool  # HookedEncoder: blocks take an additive padding mask
    attention_mask: torch.Tensor | None = None  # (batch, pos) 1 = real token; encoders only

    @property
    def n_layers(self) -> int:
        return self.model.cfg.n_layers

    def full(self, tokens: torch.Tensor) -> torch.Tensor:
        """Output of a normal forward pass on ``tokens`` (batch, pos)."""
        tokens = tokens.to(self.model.cfg.device)
        if self.encoder:
            mask = None if self.attention_mask is None else self.attention_mask.to(tokens.device)
            return self.model.encoder_output(tokens, None, mask)
        return self.model(tokens)

    def from_layer(self, resid: torch.Tensor, layer: int, repeats: int) -> torch.Tensor:
        """Output of blocks ``layer..`` on ``resid`` (rows, pos, d_model), patch = ``repeats``."""
        if not self.encoder:
            return self.model(resid, start_at_layer=layer)
        additive = None
        if self.attention_mask is not None:
            mask = self.attention_mask.to(resid.device).repeat(repeats, 1)  # (rows, pos)
            additive = torch.where(mask[:, None, None, :] == 0, -torch.inf, 0.0).to(resid.dtype)
        for block in self.model.blocks[layer:]:
            resid = block(resid, additive)
        return resid


def resid_name(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


# ----------------------------------------------------------------------------- batched sweep


def rows_per_pass(model, n_pos: int, memory_budget_mb: float, scored: bool = False) -> int:
    """How many rows (prompt x patch) one forward pass may hold within the budget.

    Counts the largest transient tensors of one row: attention scores and pattern, MLP hidden
    (gated MLPs: gate and input), residual-sized temporaries and the logits, in the model's
    dtype. ``scored``: the pass computes logits at one position per row only (the fast
    engine with ``PatchPair.score_pos``), which for a large vocabulary is most of a row.
    """
    cfg = model.cfg
    itemsize = torch.finfo(cfg.dtype).bits // 8
    per_row = n_pos * layer_floats(cfg, n_pos) + logit_floats(model, 1 if scored else n_pos)
    return max(1, int(memory_budget_mb * 2**20 // (per_row * itemsize)))


def layer_floats(cfg, n_pos: int) -> int:
    """Floats of one layer's largest transient tensors, per row and position (attention
    scores and pattern, MLP hidden (gated: gate and input), residual-sized temporaries)."""
    d_mlp = (cfg.d_mlp or 0) * (2 if getattr(cfg, "gated_mlp", False) else 1)
    return 3 * d_mlp + 10 * cfg.d_model + 3 * cfg.n_heads * n_pos


def logit_floats(model, n_scored: int) -> int:
    """Floats of the logits and one more vocabulary-sized tensor per row, at ``n_scored``
    positions (0 for a model without an unembedding)."""
    d_out = getattr(model.cfg, "d_vocab_out", model.cfg.d_vocab) if hasattr(model, "unembed") \
        else 0
    return 2 * d_out * n_scored


def reduce_metric(value: torch.Tensor) -> torch.Tensor:
    """A metric may return a scalar or one value per prompt (batch,): both become a scalar."""
    value = torch.as_tensor(value)
    return value.float().mean() if value.ndim else value.float()


def patched_metrics(
    runner: Runner,
    hook_name: str,
    layer: int,
    base_resid: torch.Tensor,
    source_act: torch.Tensor,
    masks: torch.Tensor,
    metric: Callable[[torch.Tensor], torch.Tensor],
    max_rows: int,
) -> torch.Tensor:
    """Metric under each patch: masks (patch, ...) bool -> (patch,) float.

    base_resid: (batch, pos, d_model) residual entering ``layer`` in the run being patched;
    source_act: (batch, ...) the activation at ``hook_name`` in the source run.
    """
    batch = base_resid.shape[0]

    def run_chunk(chunk: torch.Tensor) -> torch.Tensor:
        n = chunk.shape[0]

        def patch(act: torch.Tensor) -> torch.Tensor:
            view = act.view(n, batch, *act.shape[1:])  # (patch, batch, ...)
            mixed = torch.where(chunk[:, None], source_act[None], view)
            return mixed.reshape(act.shape)

        resid = base_resid.repeat(n, *([1] * (base_resid.ndim - 1)))  # (rows, pos, d_model)
        with scoped_hooks(runner.model, {hook_name: patch}):
            return runner.from_layer(resid, layer, n)

    return chunked_metrics(masks, batch, max_rows, run_chunk, metric)


def chunked_metrics(
    masks: torch.Tensor,
    batch: int,
    max_rows: int,
    run_chunk: Callable[[torch.Tensor], torch.Tensor],
    metric: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """(patch,) metrics: ``run_chunk(masks (patch, ...)) -> output (rows, ...)`` per chunk of
    at most ``max_rows`` rows, row ``g * batch + b`` = prompt b under patch g."""
    per_chunk = max(1, max_rows // batch)
    out = torch.empty(masks.shape[0])
    for start in range(0, masks.shape[0], per_chunk):
        chunk = masks[start : start + per_chunk]  # (patch, ...)
        output = run_chunk(chunk)
        for g in range(chunk.shape[0]):
            out[start + g] = reduce_metric(metric(output[g * batch : (g + 1) * batch]))
    return out


def chunk_count(n_items: int, per_chunk: int) -> int:
    return math.ceil(n_items / max(1, per_chunk))
