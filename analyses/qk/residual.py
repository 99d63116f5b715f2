"""The residual stream a head reads, at chosen (batch, pos) rows, as a sum of upstream components.

In a pre-norm decoder the input of block L is exactly

    resid_pre[L] = embed (+ pos_embed, when learned) + sum over l < L of
                   (sum_h z_h W_O^h  +  b_O[l]  +  mlp_out[l])

so every head output (z_h W_O^h, what TransformerLens' ``hook_result`` would hold), every
attention output bias and every MLP output is one component. Where an attention-output SAE on
``hook_z`` is given for an upstream layer, that layer's head outputs are replaced by its SAE
features (activation x decoder row, written through W_O), the decoder bias and an error term
defined as the rest, so the sum stays exact.

TransformerLens' ``ActivationCache.get_full_resid_decomposition`` builds a similar stack, but
it needs a cache from ``run_with_cache`` (attnlab attaches hooks only through
:mod:`probes.hooks`) and has no SAE split; here only the rows of the chosen pairs are computed.

Frozen normalisation (as in direct logit attribution): with the scale of each position fixed
at its value in the forward pass, ``ln1`` is linear in its input. LayerNorm:
w * (c - mean(c)) / scale per component, and its bias b is one more component (``ln1.b``);
RMSNorm: w * c / scale; the ``Pre`` variants have no w or b.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from data.notation import head_label, sublayer_label
from probes.models import is_encoder, unwrap
from saes.encode import encode

#: ln1 modules whose frozen-scale form is known (TransformerLens class names)
NORMS = ("LayerNorm", "LayerNormPre", "RMSNorm", "RMSNormPre", "Identity")
_CENTRED = ("LayerNorm", "LayerNormPre")


class ResidualParts(NamedTuple):
    """Components of the residual stream at ``pair`` rows; they sum to ``resid_pre``."""

    labels: tuple[str, ...]  # embed, pos_embed, L0H1, attn0.b_O, mlp0, L0F12, L0.sae_b_dec ...
    kinds: tuple[str, ...]  # embed | pos_embed | head | attn_bias | mlp | sae_feature | ...
    layers: tuple[int, ...]  # source layer of each component (-1: embeddings)
    vectors: Tensor  # (pair, component, d_model)


def check_supported(loaded, layer: int) -> None:
    """Raise ValueError (saying why) where the exact decomposition does not apply."""
    model = unwrap(loaded)
    cfg = model.cfg
    if is_encoder(loaded) or not hasattr(model, "blocks") or cfg.attention_dir != "causal":
        raise ValueError("the QK decomposition needs a pre-norm causal decoder (organism, "
                         "smollm2, GPT-2-style models); encoders have post-LayerNorm blocks")
    if not 0 <= layer < cfg.n_layers:
        raise ValueError(f"layer {layer} out of range: the model has {cfg.n_layers} layers")
    problems = {
        "positions": cfg.positional_embedding_type not in ("standard", "rotary"),
        "split qkv inputs": cfg.use_split_qkv_input or cfg.use_attn_in,
        "QK-norm": cfg.use_qk_norm or cfg.clip_qkv is not None,
        "soft-capped scores": (cfg.attn_scores_soft_cap or -1) > 0,
        "log-n query scaling": cfg.use_logn_attn,
        "4-bit weights": cfg.load_in_4bit,
        "post-sublayer norms": getattr(cfg, "use_normalization_before_and_after", False),
    }
    bad = [name for name, hit in problems.items() if hit]
    norm = type(model.blocks[layer].ln1).__name__
    if norm not in NORMS:
        bad.append(f"normalisation {norm}")
    if bad:
        raise ValueError(f"the exact QK decomposition does not cover this model's {', '.join(bad)}"
                         f" (positional type {cfg.positional_embedding_type!r}); use another "
                         "model or layer")


def hook_names(loaded, layer: int) -> list[str]:
    """What :func:`residual_parts` and the score check read from one forward pass."""
    cfg = unwrap(loaded).cfg
    names = ["hook_embed"]
    if cfg.positional_embedding_type == "standard":
        names.append("hook_pos_embed")
    for la in range(layer):
        names.append(f"blocks.{la}.attn.hook_z")
        if not cfg.attn_only:
            names.append(f"blocks.{la}.hook_mlp_out")
    names += [f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.attn.hook_attn_scores"]
    if type(unwrap(loaded).blocks[layer].ln1).__name__ != "Identity":
        names.append(f"blocks.{layer}.ln1.hook_scale")
    return names


def _head_parts(model, layer: int, z: Tensor, sae) -> tuple[list, list, Tensor]:
    """(labels, kinds, (pair, component, d_model)) for one upstream attention layer's heads."""
    W_O = model.blocks[layer].attn.W_O  # (head, d_head, d_model)
    if sae is None:
        vec = torch.einsum("phd,hdm->phm", z, W_O)
        labels = [head_label(layer, h) for h in range(W_O.shape[0])]
        return labels, ["head"] * len(labels), vec
    flat_O = W_O.reshape(-1, W_O.shape[-1])  # (head * d_head, d_model)
    z_flat = z.reshape(z.shape[0], -1)  # (pair, d_in)
    acts = encode(sae, z_flat.to(sae.W_dec.dtype)).acts.to(z.dtype)  # (pair, d_sae)
    W_dec, b_dec = sae.W_dec.to(z.dtype), sae.b_dec.to(z.dtype)  # (d_sae, d_in), (d_in,)
    error = z_flat - acts @ W_dec - b_dec  # (pair, d_in): the rest, so the sum stays exact
    feat = acts[:, :, None] * (W_dec @ flat_O)[None]  # (pair, d_sae, d_model)
    extra = torch.stack([(b_dec @ flat_O).expand(z.shape[0], -1), error @ flat_O], 1)
    n = W_dec.shape[0]
    labels = [f"L{layer}F{f}" for f in range(n)] + [f"L{layer}.sae_b_dec", f"L{layer}.sae_error"]
    return labels, ["sae_feature"] * n + ["sae_bias", "sae_error"], torch.cat([feat, extra], 1)


def residual_parts(loaded, acts: dict[str, Tensor], layer: int, batch_idx: Tensor,
                   pos_idx: Tensor, saes: dict | None = None) -> ResidualParts:
    """The components of ``blocks.{layer}.hook_resid_pre`` at rows (batch_idx[p], pos_idx[p]).

    ``acts``: the activations named by :func:`hook_names`; ``saes``: upstream layer -> a hook_z
    SAE whose features replace that layer's head outputs.
    """
    model = unwrap(loaded)
    saes = saes or {}
    at = (batch_idx, pos_idx)
    labels, kinds, layers, vecs = ["embed"], ["embed"], [-1], [acts["hook_embed"][at]]
    if "hook_pos_embed" in acts:
        labels.append("pos_embed")
        kinds.append("pos_embed")
        layers.append(-1)
        vecs.append(acts["hook_pos_embed"][at])
    for la in range(layer):
        z = acts[f"blocks.{la}.attn.hook_z"][at]  # (pair, head, d_head)
        lab, kin, vec = _head_parts(model, la, z, saes.get(la))
        b_O = model.blocks[la].attn.b_O.expand(len(batch_idx), -1)  # (pair, d_model)
        labels += [*lab, f"{sublayer_label('attn', la)}.b_O"]
        kinds += [*kin, "attn_bias"]
        layers += [la] * (len(lab) + 1)
        vecs += [*vec.unbind(1), b_O]
        if f"blocks.{la}.hook_mlp_out" in acts:
            labels.append(sublayer_label("mlp", la))
            kinds.append("mlp")
            layers.append(la)
            vecs.append(acts[f"blocks.{la}.hook_mlp_out"][at])
    return ResidualParts(tuple(labels), tuple(kinds), tuple(layers), torch.stack(vecs, 1))


def frozen_norm(loaded, layer: int, parts: ResidualParts, scale: Tensor | None) -> ResidualParts:
    """``ln1`` of block ``layer`` applied to each component with the scale frozen.

    ``scale``: (pair, 1) the cached ``ln1.hook_scale`` at the rows (None for no norm). A
    LayerNorm's bias becomes one more component, ``ln1.b``; the result sums to ``ln1(resid)``.
    """
    ln = unwrap(loaded).blocks[layer].ln1
    kind = type(ln).__name__
    x = parts.vectors  # (pair, component, d_model)
    if kind in _CENTRED:
        x = x - x.mean(-1, keepdim=True)
    if scale is not None:
        x = x / scale[:, None, :]
    if hasattr(ln, "w"):
        x = x * ln.w
    if not hasattr(ln, "b"):
        return parts._replace(vectors=x)
    bias = ln.b.expand(x.shape[0], 1, -1)
    return ResidualParts(parts.labels + ("ln1.b",), parts.kinds + ("norm_bias",),
                         parts.layers + (layer,), torch.cat([x, bias], 1))
