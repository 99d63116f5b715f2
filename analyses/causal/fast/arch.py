"""Which decoders the fast engine runs exactly, and the shapes of their key/value heads."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: Activations the fast engine patches. ``z`` and ``q`` are per query head; ``k`` and ``v`` are
#: per key/value head: with grouped-query attention (GQA) one k/v head is shared by
#: ``n_heads // n_key_value_heads`` query heads, and a k or v patch changes all of them.
FAST_COMPONENTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z",
                   "q", "k", "v")
NORMS = ("LN", "LNPre", "RMS", "RMSPre", None)
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def grouped(cfg) -> bool:
    """Whether the model keeps fewer key/value heads than query heads (GQA, not ungrouped)."""
    return cfg.n_key_value_heads is not None and not cfg.ungroup_grouped_query_attention


def kv_heads(cfg) -> int:
    """Heads of ``hook_k``/``hook_v`` (and ``hook_rot_k``): n_key_value_heads under GQA."""
    return cfg.n_key_value_heads if grouped(cfg) else cfg.n_heads


def component_heads(cfg, component: str) -> int:
    """Heads a per-head patch of ``component`` enumerates: k/v per key/value head, else per
    query head."""
    return kv_heads(cfg) if component in ("k", "v") else cfg.n_heads


def _flag(cfg, name: str) -> bool:
    return bool(getattr(cfg, name, False))


def unsupported_reason(model) -> str | None:
    """Why the fast engine cannot run ``model`` exactly, or None when it can.

    Supported: causal HookedTransformer decoders with LayerNorm, LNPre, RMSNorm, RMSPre or no
    normalisation; learned or rotary positions (any rotary table TransformerLens computes once
    per model: plain, NTK-by-parts, YaRN, linear scaling); plain or gated MLPs with the
    activations of :data:`ACTIVATIONS`; multi-head or grouped-query attention; attention-only
    models. No hooks may be attached (the fast pass would silently skip them).
    """
    cfg = model.cfg
    checks = (
        (type(model).__name__ != "HookedTransformer", "it is not a HookedTransformer decoder"),
        (cfg.attention_dir != "causal", "its attention is not causal"),
        (cfg.positional_embedding_type not in ("standard", "rotary"),
         f"positional embedding {cfg.positional_embedding_type!r} is not standard or rotary"),
        (_flag(cfg, "use_dynamic_ntk_rope"), "its rotary base depends on length"),
        (cfg.normalization_type not in NORMS,
         f"normalization {cfg.normalization_type!r} is not one of {NORMS}"),
        (cfg.dtype not in (torch.float32, torch.float64), f"its dtype is {cfg.dtype}"),
        (cfg.act_fn not in ACTIVATIONS and not cfg.attn_only,
         f"activation {cfg.act_fn!r} is not supported"),
        (cfg.parallel_attn_mlp, "attention and MLP run in parallel"),
        (_flag(cfg, "num_experts"), "it is a mixture of experts"),
        (cfg.use_local_attn, "it uses local attention"),
        (_flag(cfg, "scale_attn_by_inverse_layer_idx"), "attention is scaled by layer index"),
        ((getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0
         or (getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0, "it soft-caps"),
        (_flag(cfg, "use_normalization_before_and_after"), "it normalises after sublayers"),
        (_flag(cfg, "use_qk_norm") or getattr(model.blocks[0].attn, "q_norm", None) is not None,
         "it normalises queries and keys"),
        (getattr(cfg, "clip_qkv", None) is not None, "it clips queries, keys and values"),
        (_flag(cfg, "use_logn_attn"), "it scales queries by log length"),
        (_flag(cfg, "use_attention_sinks"), "it has attention sinks"),
        (_flag(cfg, "use_split_qkv_input") or _flag(cfg, "use_attn_in"),
         "its attention reads per-head inputs"),
        (any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values()),
         "hooks are attached to the model"),
    )
    return next((why for bad, why in checks if bad), None)
