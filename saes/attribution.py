"""Direct feature attribution (DFA) of attention-SAE features to heads and source positions.

Kissane et al. 2024 ("Interpreting attention layer outputs with sparse autoencoders"): the
SAE input is hook_z of all heads concatenated, so the pre-activation of feature f,

    pre_f = sum_h (z_h - b_dec_h) . W_enc[h-slice, f] + b_enc[f],

is an exact sum of one term per head. Since z_h(q) = sum_s A_h(q, s) v_h(s) (v includes b_V,
which is how TransformerLens computes hook_z), each head term splits further over source
positions s:

    head_h(q) = sum_s A_h(q, s) * (v_h(s) . W_enc[h-slice, f])  -  b_dec_h . W_enc[h-slice, f].

The b_dec term is kept apart as a per-head offset, so the split is exact whether or not the
pattern rows sum to one (attention sinks, padding). v . W_enc is contracted per head before
the pattern is applied: memory O(pos * key_pos * head) per feature, not d_head times that.

    hd = dfa_by_head(sae, z, features=[3, 17])          # HeadDFA: (..., head, feature)
    sd = dfa_by_source(sae, pattern, v, features=[3])   # SourceDFA, per source position:
                                                        # (batch, pos, key_pos, head, feature)
    lens = dfa_for_tokens(loaded, sae, layer, tokens, features)   # runs the model

Shapes use the dimension names of docs/GLOSSARY.md.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from probes.models import LoadedModel
from probes.tokens import Tokens
from saes.activations import check_sae_fits, record_tokens


class EncoderSlices(NamedTuple):
    """The encoder of an SAE, split per head for the selected features."""

    W: Tensor  # (head, d_head, feature) W_enc[h-slice, f], times the decoder norm if rescaled
    b_dec: Tensor  # (head, d_head) subtracted from z before encoding (zeros if not applied)
    b_enc: Tensor  # (feature,) encoder bias (times the decoder norm if rescaled)
    features: Tensor  # (feature,) long, the feature indices


def encoder_slices(sae, n_heads: int, features=None) -> EncoderSlices:
    """Per-head encoder weights of `features` (default: all) for an n_heads-wide hook_z SAE."""
    if sae.cfg.normalize_activations != "none":
        raise ValueError(
            f"DFA needs a linear encoder; this SAE normalises its input "
            f"({sae.cfg.normalize_activations!r}). Fold the normalisation first."
        )
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    if d_in % n_heads:
        raise ValueError(f"SAE d_in={d_in} is not divisible by n_heads={n_heads}")
    feats = torch.arange(d_sae) if features is None else torch.as_tensor(features).long()
    if feats.ndim != 1 or (feats.numel() and (feats.min() < 0 or feats.max() >= d_sae)):
        raise ValueError(f"features must be a 1-d list of indices in [0, {d_sae})")
    feats = feats.to(sae.W_enc.device)
    W = sae.W_enc.detach()[:, feats]  # (d_in, feature)
    b_enc = sae.b_enc.detach()[feats] if hasattr(sae, "b_enc") else torch.zeros_like(W[0])
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        # SAE-Lens' TopK then scales the whole pre-activation by ||W_dec[f]|| (still linear)
        scale = sae.W_dec.detach()[feats].norm(dim=-1)
        W, b_enc = W * scale, b_enc * scale
    b_dec = sae.b_dec.detach() if sae.cfg.apply_b_dec_to_input else torch.zeros(d_in)
    d_head = d_in // n_heads
    return EncoderSlices(
        W.reshape(n_heads, d_head, -1), b_dec.reshape(n_heads, d_head).to(W), b_enc, feats
    )


class HeadDFA(NamedTuple):
    """Each selected feature's pre-activation split into one exact term per head."""

    per_head: Tensor  # (..., head, feature)
    bias: Tensor  # (feature,) the b_enc term
    pre: Tensor  # (..., feature) per_head.sum(-2) + bias: the feature pre-activation
    features: Tensor  # (feature,)


def dfa_by_head(sae, z: Tensor, features=None, n_heads: int | None = None) -> HeadDFA:
    """DFA by head for z of shape (..., head, d_head), or (..., d_in) with `n_heads` given."""
    d_in = int(sae.cfg.d_in)
    if n_heads is not None and z.shape[-1] == d_in and d_in % n_heads == 0:
        z = z.reshape(*z.shape[:-1], n_heads, d_in // n_heads)  # (..., d_in) -> (..., head, d_head)
    if z.ndim < 2 or z.shape[-1] * z.shape[-2] != d_in:
        raise ValueError(
            f"z has shape {tuple(z.shape)}; DFA needs (..., n_heads, d_head) with "
            f"n_heads*d_head = d_in = {d_in} (or (..., d_in) plus n_heads=)"
        )
    sl = encoder_slices(sae, z.shape[-2], features)
    x = z.to(sl.W.dtype) - sl.b_dec  # (..., head, d_head)
    per_head = torch.einsum("...hd,hdf->...hf", x, sl.W)  # (..., head, feature)
    return HeadDFA(per_head, sl.b_enc, per_head.sum(-2) + sl.b_enc, sl.features)


class SourceDFA(NamedTuple):
    """Each selected feature's head terms split over source positions via the pattern."""

    per_source: Tensor  # (batch, pos, key_pos, head, feature): A_h(q, s) v_h(s) . W_enc[h-slice, f]
    offset: Tensor  # (head, feature): -b_dec_h . W_enc[h-slice, f]
    bias: Tensor  # (feature,) the b_enc term
    query_pos: Tensor  # (pos,) long, the query positions kept
    features: Tensor  # (feature,)

    @property
    def per_head(self) -> Tensor:
        """(batch, pos, head, feature): summing the sources back gives `dfa_by_head`'s terms."""
        return self.per_source.sum(2) + self.offset


def dfa_by_source(sae, pattern: Tensor, v: Tensor, features, query_pos=None) -> SourceDFA:
    """DFA by head and source position from hook_pattern (batch, head, pos, key_pos) and hook_v
    (batch, key_pos, kv_head, d_head); `query_pos` (list of ints) restricts the queries kept."""
    if pattern.ndim != 4 or v.ndim != 4:
        raise ValueError("pattern must be (batch, head, q, k) and v (batch, k, head, d_head)")
    n_heads = pattern.shape[1]
    if v.shape[2] != n_heads:  # grouped-query attention: repeat key/value heads
        v = v.repeat_interleave(n_heads // v.shape[2], dim=2)
    sl = encoder_slices(sae, n_heads, features)
    q = torch.arange(pattern.shape[2]) if query_pos is None else torch.as_tensor(query_pos)
    vw = torch.einsum("bkhd,hdf->bkhf", v.to(sl.W.dtype), sl.W)  # (batch, key_pos, head, feature)
    a = pattern[:, :, q.to(pattern.device)].to(sl.W.dtype)  # (batch, head, pos, key_pos)
    per_source = torch.einsum("bhqk,bkhf->bqkhf", a, vw)  # (batch, pos, key_pos, head, feature)
    offset = -torch.einsum("hd,hdf->hf", sl.b_dec, sl.W)  # (head, feature)
    return SourceDFA(per_source, offset, sl.b_enc, q.long(), sl.features)


class LayerDFA(NamedTuple):
    """DFA of one prompt batch through the model."""

    by_head: HeadDFA  # per_head: (batch, pos, head, feature)
    by_source: SourceDFA | None  # per_source: (batch, pos, key_pos, head, feature), when asked for
    mask: Tensor  # (batch, pos) bool, real tokens


@torch.no_grad()
def dfa_for_tokens(
    loaded: LoadedModel, sae, layer: int, tokens: Tokens, features, by_source: bool = False,
    query_pos=None,
) -> LayerDFA:
    """Run `tokens` (one batch) and attribute `features` of `sae` at `layer` to heads
    (and to source positions when `by_source`)."""
    check_sae_fits(sae, loaded.model, layer)
    names = [f"blocks.{layer}.attn.hook_{n}" for n in ("z", "pattern", "v")]
    got = record_tokens(loaded, tokens, names if by_source else names[:1])
    heads = dfa_by_head(sae, got[names[0]], features)
    src = None
    if by_source:
        src = dfa_by_source(sae, got[names[1]], got[names[2]], features, query_pos)
    return LayerDFA(heads, src, tokens.attention_mask.bool())
