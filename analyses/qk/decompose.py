"""The exact bilinear split of one head's pre-softmax scores over upstream components.

For a pair (query i, key j) of head h in layer L, with ln1's scale frozen at both positions
(:mod:`analyses.qk.residual`), the query and key are sums over components:

    q_i = sum_a rot_i(LN_i(c_a(i)) W_Q^h) + rot_i(b_Q^h)        (LN bias: one more c_a)
    k_j = sum_b rot_j(LN_j(c_b(j)) W_K^g) + rot_j(b_K^g)        (g = the KV group of h, GQA)

and s(i, j) = q_i . k_j / attn_scale = sum_a sum_b T[a, b], T[a, b] = q_a . k_b / attn_scale.
Rotary is a position-dependent linear map, applied to every component's query and key with
TransformerLens' own ``apply_rotary`` (one call per position), so the split stays exact. The
query-side components are the residual parts + ``b_Q``, the key-side ones the parts + ``b_K``.

TransformerLens has no such split: its ``decompose_resid`` / ``get_full_resid_decomposition``
stack the residual but stop before W_Q, W_K and rotary; circuit-tracer freezes patterns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from analyses.qk.pairs import PAIR_RULES, QKPairs, select_pairs
from analyses.qk.residual import (
    ResidualParts,
    check_supported,
    frozen_norm,
    hook_names,
    residual_parts,
)
from probes.hooks import record
from probes.models import unwrap


@dataclass(frozen=True)
class QKConfig:
    """Which head, which (query, key) pairs, and how many pairs per chunk of work."""

    layer: int
    head: int
    pairs: str = "induction"  # a rule of analyses.qk.pairs.PAIR_RULES
    chunk: int = 64  # pairs per chunk: memory is chunk x component^2 floats

    def __post_init__(self) -> None:
        if self.pairs not in PAIR_RULES or self.chunk < 1:
            raise ValueError(f"pairs must be one of {list(PAIR_RULES)} and chunk >= 1; got "
                             f"pairs={self.pairs!r}, chunk={self.chunk}")


class QKResult(NamedTuple):
    """Per-pair-averaged terms of the split, and the check that they add up to the scores."""

    config: QKConfig
    pairs: QKPairs
    q_labels: tuple[str, ...]  # query-side components (rows of the term matrix)
    q_kinds: tuple[str, ...]
    q_layers: tuple[int, ...]
    k_labels: tuple[str, ...]  # key-side components (columns)
    k_kinds: tuple[str, ...]
    k_layers: tuple[int, ...]
    mean: Tensor  # (component, component): mean term over the pairs
    std: Tensor  # (component, component): its standard deviation over the pairs
    nonzero: Tensor  # (component, component) bool: the term is non-zero for some pair
    term_sum: Tensor  # (pair,): sum of all terms of each pair
    score: Tensor  # (pair,): the model's hook_attn_scores at each pair

    @property
    def max_error(self) -> float:
        """Largest |sum of terms - actual score| over the pairs."""
        return float((self.term_sum - self.score).abs().max())


def _rotate(attn, x: Tensor, positions: Tensor) -> Tensor:
    """Rotary at each row's position: x (pair, component, d_head) -> the same, rotated."""
    if attn.cfg.positional_embedding_type != "rotary":
        return x
    out = torch.empty_like(x)
    for p in positions.unique().tolist():
        sel = positions == p
        rows = x[sel]  # (m, component, d_head)
        flat = rows.reshape(-1, 1, 1, rows.shape[-1])  # (m * component, 1, 1, d_head)
        out[sel] = attn.apply_rotary(flat, past_kv_pos_offset=int(p)).reshape(rows.shape)
    return out


def _side(loaded, acts, cfg: QKConfig, b: Tensor, pos: Tensor, saes,
          W: Tensor, bias: Tensor, bias_name: str) -> tuple[ResidualParts, Tensor]:
    """One side's components and their rotated q (or k) vectors (pair, component, d_head)."""
    parts = residual_parts(loaded, acts, cfg.layer, b, pos, saes)
    scale_name = f"blocks.{cfg.layer}.ln1.hook_scale"
    scale = acts[scale_name][b, pos] if scale_name in acts else None  # (pair, 1)
    parts = frozen_norm(loaded, cfg.layer, parts, scale)
    vec = parts.vectors @ W  # (pair, component, d_head)
    vec = torch.cat([vec, bias.expand(len(b), 1, -1)], 1)
    parts = ResidualParts(parts.labels + (bias_name,), parts.kinds + ("qk_bias",),
                          parts.layers + (cfg.layer,), parts.vectors)
    return parts, _rotate(unwrap(loaded).blocks[cfg.layer].attn, vec, pos)


@torch.no_grad()
def decompose_qk(loaded, tokens: Tensor, config: QKConfig, saes: dict | None = None
                 ) -> QKResult:
    """Split head ``config.head`` of layer ``config.layer``'s scores on ``tokens`` (batch, pos).

    ``tokens`` are unpadded prompts (e.g. ``load_task(...).clean_tokens``). ``saes``: upstream
    layer -> a hook_z SAE whose features replace that layer's heads (its decoder bias and its
    error are components too). The result's ``max_error`` says how exact the split was.
    """
    check_supported(loaded, config.layer)
    model = unwrap(loaded)
    if not 0 <= config.head < model.cfg.n_heads:
        raise ValueError(f"head {config.head} out of range: layer {config.layer} has "
                         f"{model.cfg.n_heads} heads")
    bad = [la for la in (saes or {}) if not 0 <= la < config.layer]
    if bad:
        raise ValueError(f"SAE layers {bad} are not upstream of layer {config.layer}")
    tokens = tokens.to(model.cfg.device)
    names = hook_names(loaded, config.layer)
    acts = record(model, names, lambda: model(tokens, stop_at_layer=config.layer + 1)).acts
    scores = acts[f"blocks.{config.layer}.attn.hook_attn_scores"][:, config.head]
    pairs = select_pairs(config.pairs, tokens.cpu(), scores.cpu())
    pairs = QKPairs(*(t.to(tokens.device) for t in pairs))
    attn = model.blocks[config.layer].attn
    W_Q, b_Q = attn.W_Q[config.head], attn.b_Q[config.head]  # (d_model, d_head), (d_head,)
    W_K, b_K = attn.W_K[config.head], attn.b_K[config.head]  # the head's KV group under GQA
    total = total_sq = hits = None
    sums = []
    for start in range(0, len(pairs.batch), config.chunk):
        sl = slice(start, start + config.chunk)
        b, qp, kp = pairs.batch[sl], pairs.query[sl], pairs.key[sl]
        q_parts, q = _side(loaded, acts, config, b, qp, saes, W_Q, b_Q, "b_Q")
        k_parts, k = _side(loaded, acts, config, b, kp, saes, W_K, b_K, "b_K")
        terms = torch.einsum("pad,pbd->pab", q, k) / attn.attn_scale  # (pair, comp, comp)
        sums.append(terms.sum((1, 2)))
        t64 = terms.double()
        if total is None:
            total, total_sq, hits = t64.sum(0), (t64 ** 2).sum(0), (terms != 0).any(0)
        else:
            total += t64.sum(0)
            total_sq += (t64 ** 2).sum(0)
            hits |= (terms != 0).any(0)
    n = len(pairs.batch)
    mean = total / n
    std = (total_sq / n - mean ** 2).clamp_min(0).sqrt()
    return QKResult(
        config, QKPairs(*(t.cpu() for t in pairs)),
        q_parts.labels, q_parts.kinds, q_parts.layers,
        k_parts.labels, k_parts.kinds, k_parts.layers,
        mean.float().cpu(), std.float().cpu(), hits.cpu(), torch.cat(sums).cpu(),
        scores[pairs.batch, pairs.query, pairs.key].cpu(),
    )
