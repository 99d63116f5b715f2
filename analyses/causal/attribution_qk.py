"""AtP*'s query/key fix: attribution of q and k patches through the exact attention softmax.

Kramár, Lieberum, Shah & Nanda (2024), *AtP\\*: An efficient and scalable method for
localizing LLM behaviour to components*, section 3.1.1. Plain attribution patching
linearises the metric through the attention softmax, which fails badly when a patch moves a
logit into or out of saturation (a key that the query suddenly attends to). AtP* instead
recomputes the attention pattern A' of the patched head exactly from the recorded queries
and keys and linearises only after it:

    m(patched) - m(base)  ~=  sum over (query, key) of (A' - A) * dm/dA |_{base}

- a query patch of head h changes only h's rows: A' = softmax(q_src k_base^T / scale + mask)
  for all query positions at once, and each query position's row alone for a per-position
  patch (rows are independent);
- a key patch of key/value head j at all positions: A' = softmax(q_base k_src^T / scale +
  mask) for every query head of j's group (GQA: a k patch is per key/value head);
- a key patch at one position p changes one logit per query row, s_qp -> s'_qp, and the new
  row has a closed form: A'_qp = w = sigmoid(s'_qp - lse_q - log(1 - A_qp)) and
  A'_qk = A_qk (1 - w) / (1 - A_qp) elsewhere, so all positions cost one pass:
  effect = (w - A_qp) * (g_qp - (sum_k A_qk g_qk - A_qp g_qp) / (1 - A_qp)).

Queries and keys are those attention reads (after the rotary embedding where the model has
one: ``hook_rot_q``/``hook_rot_k``). Where the metric is linear in the pattern (one
attention-only layer without LayerNorm) the estimate is exact (tested). TransformerLens and
SAE-Lens have no attribution patching, hence this module.

Shapes use docs/GLOSSARY.md's names; ``query_pos``/``key_pos`` are the pattern's axes.
"""

from __future__ import annotations

import torch
from transformer_lens.utils import get_act_name

from analyses.causal.fast import key_name, kv_heads

QK = ("q", "k")


def query_name(cfg, layer: int) -> str:
    """The queries attention reads: after the rotary embedding where the model has one."""
    rotary = cfg.positional_embedding_type == "rotary"
    return f"blocks.{layer}.attn.hook_rot_q" if rotary else get_act_name("q", layer)


def qk_names(cfg, layers) -> list[str]:
    """Activations the fix reads at ``layers``: queries, keys and the attention pattern."""
    return [name for layer in layers for name in
            (query_name(cfg, layer), key_name(cfg, layer), get_act_name("pattern", layer))]


def _scores(q: torch.Tensor, k: torch.Tensor, scale: float, group: int) -> torch.Tensor:
    """Masked attention logits (batch, head, query_pos, key_pos) of q (batch, pos, head,
    d_head) and k (batch, pos, kv_head, d_head)."""
    k = k.repeat_interleave(group, dim=2) if group > 1 else k
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / scale
    n = scores.shape[-1]
    future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, -torch.inf)


def qk_effects(model, component: str, per_position: bool, layer: int, base: dict,
               source: dict, grads: dict) -> torch.Tensor:
    """Estimated effects of every ``component`` ("q" or "k") patch of ``layer``, summed over
    the batch: (head,) / (pos, head) for q, (kv_head,) / (pos, kv_head) for k.

    base, source: activations of the run being patched and of the source run (at least
    :func:`qk_names`); grads: d metric / d activation in the run being patched.
    """
    cfg = model.cfg
    q_name, k_name, a_name = qk_names(cfg, [layer])
    scale = float(model.blocks[layer].attn.attn_scale)
    group = cfg.n_heads // kv_heads(cfg)
    pattern, grad = base[a_name], grads[a_name]  # (batch, head, query_pos, key_pos) each
    if component == "q" or not per_position:
        q = source[q_name] if component == "q" else base[q_name]
        k = base[k_name] if component == "q" else source[k_name]
        moved = (_scores(q, k, scale, group).softmax(-1) - pattern) * grad
        per_row = moved.sum((0, 3))  # (head, query_pos)
        if component == "q":
            return per_row.T if per_position else per_row.sum(1)
        return per_row.sum(1).view(-1, group).sum(1)  # (kv_head,)
    # one key position at a time: the closed-form row of a single changed logit
    base_scores = _scores(base[q_name], base[k_name], scale, group)
    new = _scores(base[q_name], source[k_name], scale, group)  # s'_qp for every p
    lse = base_scores.logsumexp(-1, keepdim=True)  # (batch, head, query_pos, 1)
    rest = torch.log1p(-pattern.clamp(max=1.0))  # log(1 - A)
    w = torch.sigmoid(new - lse - rest)
    weighted = pattern * grad
    others = (weighted.sum(-1, keepdim=True) - weighted) / (1 - pattern).clamp_min(1e-12)
    effect = torch.nan_to_num((w - pattern) * (grad - others))  # 0 where key > query
    per_key = effect.sum((0, 2))  # (head, key_pos)
    return per_key.view(-1, group, per_key.shape[-1]).sum(1).T  # (pos, kv_head)
