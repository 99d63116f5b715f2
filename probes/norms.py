"""Attention output norms: per head ||z_h W_O^h|| per token, and per layer ||attn_out||.

TransformerLens can materialise every head's output (``use_attn_result``, shape
(batch, pos, head, d_model)); that costs head x d_model per token. Here the per-head norm comes
from ``hook_z`` alone: ||z_h W_O^h||^2 = z_h (W_O^h W_O^h^T) z_h^T, a d_head x d_head Gram per
head, so nothing of size (pos, head, d_model) is ever built. Statistics over real tokens are
streamed (:class:`probes.accumulators.RunningMoments`).

With grouped-query attention (GQA) key/value heads are shared, but ``hook_z`` and W_O are
per query head (TransformerLens repeats v per query head before the pattern is applied), so
the statistic is per query head there too.

Table ``head_norms``: layer, head (-1 = the whole attention layer's output incl. b_O), stat
(mean | std | min | max | count), value.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from probes.accumulators import HookPlan, RunningMoments, real_rows


def output_gram(w_o: torch.Tensor) -> torch.Tensor:
    """(head, d_head, d_model) W_O -> (head, d_head, d_head) W_O^h W_O^h^T."""
    return torch.einsum("hdm,hem->hde", w_o, w_o)


def gram_norms(z: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """(..., head, d_head) z and (head, d_head, d_head) Gram -> (..., head) sqrt(z G z^T)."""
    zg = torch.einsum("...hd,hde->...he", z, gram.to(z.dtype))  # (..., head, d_head)
    return (zg * z).sum(-1).clamp_min(0).sqrt()


def head_output_norms(z: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """(..., head, d_head) z and (head, d_head, d_model) W_O -> (..., head) ||z_h W_O^h||."""
    return gram_norms(z, output_gram(w_o))


class HeadNormAccumulator:
    """Per-head output norms of one layer (from ``blocks.L.attn.hook_z``).

    The Gram W_O^h W_O^h^T is computed once, not per batch.
    """

    def __init__(self, model: Any, layer: int):
        self.layer = layer
        self.gram = output_gram(model.blocks[layer].attn.W_O.detach())  # (head, d_head, d_head)
        self.moments = RunningMoments(name=f"head norms L{layer}")

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        z = real_rows(tensor, mask)  # (n, head, d_head)
        self.moments.add(gram_norms(z, self.gram.to(z.device)))

    def result(self) -> pd.DataFrame:
        return _norm_table(self.moments, self.layer, heads=None)


class LayerNormAccumulator:
    """Norm of one layer's attention output ``blocks.L.hook_attn_out`` per token (head -1)."""

    def __init__(self, layer: int):
        self.layer = layer
        self.moments = RunningMoments(name=f"attn_out norms L{layer}")

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.hook_attn_out"

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        self.moments.add(real_rows(tensor, mask).norm(dim=-1, keepdim=True))  # (n, 1)

    def result(self) -> pd.DataFrame:
        return _norm_table(self.moments, self.layer, heads=[-1])


def _norm_table(moments: RunningMoments, layer: int, heads: list[int] | None) -> pd.DataFrame:
    m = moments.moments()
    heads = list(range(m.mean.numel())) if heads is None else heads
    stats = {"mean": m.mean, "std": m.std, "min": m.min, "max": m.max,
             "count": torch.full_like(m.mean, float(m.count))}
    return pd.concat([pd.DataFrame({"layer": layer, "head": heads, "stat": name,
                                    "value": v.reshape(-1).cpu().numpy()})
                      for name, v in stats.items()], ignore_index=True)


def norm_hooks(model: Any, layers: list[int] | None = None) -> HookPlan:
    """Head and layer norm accumulators for every layer, and their ``{hook: acc}`` map."""
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    accs: list[Any] = []
    for layer in layers:
        accs += [HeadNormAccumulator(model, layer), LayerNormAccumulator(layer)]
    return HookPlan({a.hook_name(): a for a in accs}, accs)
