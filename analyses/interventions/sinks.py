"""Why heads attend to position 0, and what that attention does (Gu et al. 2024; Sun et al. 2024).

The probe (:mod:`probes.sinks`) measures how much each head attends to position 0. Here:

- **QK decomposition.** The pre-softmax score of query i and key j is
  s(i, j) = q_i . k_j / scale = |q_i| |k_j| cos(theta_ij) / scale, with q and k exactly as the
  model uses them (after rotary for rotary models: ``hook_rot_q``/``hook_rot_k``; with
  grouped-query attention the key of the head's KV group, head h // (heads per group)) and
  ``scale`` the attention's ``attn_scale`` (sqrt(d_head) unless the model says otherwise).
  :func:`qk_parts` returns the three factors per (query, key); :class:`SinkDecomposition`
  averages them over queries for key 0 and, per query first, over its other allowed keys, so a
  sink shows whether it comes from a long k_0, from its direction (cos) or from a long q.
- **Value contribution.** |v_0 W_O^h|: how much the sink key would write into the residual
  stream per unit of attention, against the mean over the other keys.
- **Removal.** :func:`remove_sink` sets the attention to position 0 to zero for chosen heads
  and renormalises each query's remaining weights to sum 1 -- the same as a softmax with key 0
  masked out. Queries whose only allowed key is position 0 (query 0 of a causal model) keep
  their row. :class:`SinkRemoval` is the replace hook on ``hook_pattern``.

TransformerLens has the hooks but no such decomposition; TransformerLens' GQA attention
stores keys per KV group (``hook_k`` is (batch, pos, kv_head, d_head)), which is expanded here
as the model's ``calculate_attention_scores`` does.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pandas as pd
import torch

from probes.distributed import all_gather
from probes.hooks import record
from probes.models import LoadedModel, unwrap
from probes.tokens import Tokens, batches, forward

DECOMP_STATS = ("sink_score", "q_norm", "k0_norm", "cos0", "score0", "k_other_norm",
                "cos_other", "score_other", "v0_out_norm", "v_other_out_norm", "n_queries")
_SUMMED = DECOMP_STATS[:-1]


def qk_hooks(model: Any, layer: int) -> tuple[str, str]:
    """The hook names of the q and k that layer ``layer``'s scores are computed from.

    Raises ValueError for attention variants whose score is not q . k / scale of those hooks.
    """
    cfg = unwrap(model).cfg
    unsupported = {"use_qk_norm (non-rotary)": getattr(cfg, "use_qk_norm", False)
                   and cfg.positional_embedding_type != "rotary",
                   "use_logn_attn": getattr(cfg, "use_logn_attn", False),
                   "alibi": cfg.positional_embedding_type == "alibi",
                   "relative_positional_bias":
                       cfg.positional_embedding_type == "relative_positional_bias",
                   "use_attention_sinks": getattr(cfg, "use_attention_sinks", False)}
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"the q/k decomposition needs scores = q . k / scale; this model has "
                         f"{', '.join(bad)}")
    rot = "rot_" if cfg.positional_embedding_type == "rotary" else ""
    return f"blocks.{layer}.attn.hook_{rot}q", f"blocks.{layer}.attn.hook_{rot}k"


def expand_kv(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(batch, pos, kv_head, d_head) -> (batch, pos, head, d_head): each query head's KV group."""
    kv = t.shape[2]
    if n_heads % kv:
        raise ValueError(f"{n_heads} query heads cannot share {kv} key/value heads evenly")
    return t if kv == n_heads else t.repeat_interleave(n_heads // kv, dim=2)


class QKParts(NamedTuple):
    """The factors of every pre-softmax score: s = q_norm * k_norm * cos / scale."""

    q_norm: torch.Tensor  # (batch, head, pos)
    k_norm: torch.Tensor  # (batch, head, key_pos)
    cos: torch.Tensor  # (batch, head, pos, key_pos)
    scale: float

    def score(self) -> torch.Tensor:
        """(batch, head, pos, key_pos): the scores multiplied back from the factors."""
        return self.q_norm[..., None] * self.k_norm[:, :, None, :] * self.cos / self.scale


def qk_parts(q: torch.Tensor, k: torch.Tensor, scale: float) -> QKParts:
    """Norms and cosines of q (batch, pos, head, d_head) and k (batch, key_pos, kv_head, d_head)."""
    k = expand_kv(k, q.shape[2])
    qn = q.double().norm(dim=-1)  # (batch, pos, head)
    kn = k.double().norm(dim=-1)  # (batch, key_pos, head)
    dots = torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double())  # (batch, head, pos, key_pos)
    denom = qn.permute(0, 2, 1)[..., None] * kn.permute(0, 2, 1)[:, :, None, :]
    cos = dots / denom.clamp_min(1e-300)
    return QKParts(qn.permute(0, 2, 1), kn.permute(0, 2, 1), cos, float(scale))


def allowed_keys(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(batch, pos, key_pos) bool: key j is real and (causal) j <= i, for real queries i."""
    real = mask.bool()
    allowed = real[:, :, None] & real[:, None, :]
    if causal:
        n = mask.shape[1]
        allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()[None]
    return allowed


def value_out_norm(v: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """|v_j W_O^h| per (batch, head, key_pos); v (batch, pos, kv_head, d_head), W_O (head, d_head,
    d_model)."""
    v = expand_kv(v, w_o.shape[0]).double()
    out = torch.einsum("bphd,hdm->bphm", v, w_o.double())  # (batch, pos, head, d_model)
    return out.norm(dim=-1).permute(0, 2, 1)


class SinkDecomposition:
    """Streams batches and averages, per layer and head, the statistics of :data:`DECOMP_STATS`.

    Queries counted: real queries with at least one allowed key besides position 0 (causal:
    i > 0). "other" statistics are first averaged over each query's allowed keys j > 0, then
    over queries, like the key-0 ones.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = unwrap(loaded)
        self.causal = loaded.kind != "encoder"
        self._sums: dict[int, dict[str, torch.Tensor]] = {}
        self._n = 0

    def merge_ranks(self) -> None:
        """Add every rank's sums and query count into this one (one process: nothing)."""
        parts = all_gather((self._sums, self._n))
        if len(parts) == 1:
            return
        sums: dict[int, dict[str, torch.Tensor]] = {}
        for part, _ in parts:  # rank order, so that every rank adds in the same order
            for layer, stats in part.items():
                into = sums.setdefault(layer, {})
                for stat, total in stats.items():
                    into[stat] = into[stat] + total if stat in into else total
        self._sums, self._n = sums, sum(n for _, n in parts)

    def hook_names(self, layer: int) -> list[str]:
        q, k = qk_hooks(self.model, layer)
        return [q, k, f"blocks.{layer}.attn.hook_v", f"blocks.{layer}.attn.hook_pattern"]

    @torch.no_grad()
    def update(self, tokens: Tokens) -> None:
        n_layers = self.model.cfg.n_layers
        names = [n for layer in range(n_layers) for n in self.hook_names(layer)]
        _, acts = record(self.loaded, names, lambda: forward(self.loaded, tokens))
        mask = tokens.attention_mask.to(self.model.cfg.device)
        allowed = allowed_keys(mask, self.causal)  # (batch, pos, key_pos)
        others = allowed.clone()
        others[:, :, 0] = False
        queries = others.any(-1)  # (batch, pos)
        n_other = others.sum(-1).clamp_min(1).double()  # (batch, pos)
        self._n += int(queries.sum())
        for layer in range(n_layers):
            q, k, v, pattern = (acts[n] for n in self.hook_names(layer))
            attn = self.model.blocks[layer].attn
            parts = qk_parts(q, k, attn.attn_scale)
            score = parts.score()
            vo = value_out_norm(v, attn.W_O)  # (batch, head, key_pos)

            def other_mean(x: torch.Tensor) -> torch.Tensor:  # (batch, head, pos, key_pos)
                return (x * others[:, None]).sum(-1) / n_other[:, None]

            per_query = {
                "sink_score": pattern[..., 0].double(),
                "q_norm": parts.q_norm,
                "k0_norm": parts.k_norm[:, :, :1].expand_as(parts.q_norm),
                "cos0": parts.cos[..., 0], "score0": score[..., 0],
                "k_other_norm": other_mean(parts.k_norm[:, :, None, :].expand_as(score)),
                "cos_other": other_mean(parts.cos), "score_other": other_mean(score),
                "v0_out_norm": vo[:, :, :1].expand_as(parts.q_norm),
                "v_other_out_norm": other_mean(vo[:, :, None, :].expand_as(score)),
            }  # each (batch, head, pos)
            sums = self._sums.setdefault(layer, {})
            for stat, x in per_query.items():
                total = (x * queries[:, None]).sum((0, 2)).cpu()  # (head,)
                sums[stat] = sums[stat] + total if stat in sums else total

    def result(self) -> pd.DataFrame:
        """Table ``sink_decomposition``: layer, head, stat (:data:`DECOMP_STATS`), value."""
        if not self._n:
            raise ValueError("no query with a key besides position 0 was seen: feed prompts of "
                             "at least 2 tokens")
        frames = []
        for layer, sums in sorted(self._sums.items()):
            n_heads = len(sums["q_norm"])
            for stat in _SUMMED:
                frames.append(pd.DataFrame({"layer": layer, "head": range(n_heads), "stat": stat,
                                            "value": (sums[stat] / self._n).numpy()}))
            frames.append(pd.DataFrame({"layer": layer, "head": range(n_heads),
                                        "stat": "n_queries", "value": float(self._n)}))
        return pd.concat(frames, ignore_index=True)


def sink_decomposition(loaded: LoadedModel, tokens: Tokens, batch_size: int = 16
                       ) -> pd.DataFrame:
    """:class:`SinkDecomposition` over ``tokens`` in batches (table ``sink_decomposition``).

    Under torchrun ``tokens`` is this rank's block: the sums and query counts of every rank are
    added (:meth:`SinkDecomposition.merge_ranks`) before the means are taken."""
    dec = SinkDecomposition(loaded)
    for b in batches(tokens, batch_size):
        dec.update(b)
    dec.merge_ranks()
    return dec.result()


def remove_sink(pattern: torch.Tensor, heads: torch.Tensor | None = None) -> torch.Tensor:
    """``pattern`` (batch, head, pos, key_pos) without attention to key 0 for ``heads`` ((head,)
    bool; None = all), each row renormalised over its other keys. Rows with no weight left
    (a causal query 0) are kept as they were."""
    rest = pattern.clone()
    rest[..., 0] = 0.0
    total = rest.sum(-1, keepdim=True)  # (batch, head, pos, 1)
    renorm = torch.where(total > 0, rest / total.clamp_min(torch.finfo(rest.dtype).tiny),
                         pattern)
    if heads is None:
        return renorm
    sel = heads.to(pattern.device)[None, :, None, None]
    return torch.where(sel, renorm, pattern)


class SinkRemoval:
    """:func:`remove_sink` as a replace hook on ``blocks.{layer}.attn.hook_pattern``."""

    def __init__(self, layer: int, n_heads: int, heads: list[int] | None = None) -> None:
        self.layer = layer
        self.heads = None
        if heads is not None:
            bad = [h for h in heads if not 0 <= h < n_heads]
            if bad or not heads:
                raise ValueError(f"heads must be a non-empty list in 0..{n_heads - 1}, got {heads}")
            self.heads = torch.zeros(n_heads, dtype=torch.bool)
            self.heads[heads] = True

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    def __call__(self, pattern: torch.Tensor) -> torch.Tensor:
        return remove_sink(pattern, self.heads)
