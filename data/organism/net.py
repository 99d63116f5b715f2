"""A plain-PyTorch twin of the organism's HookedTransformer, used only to train it fast.

Why not train the ``HookedTransformer`` directly (measured, the reason this second transformer
forward beside the fast patching engine's is kept): one training step of the default preset
(batch 32 rows of 45-61 tokens, AdamW, gradient clipping; 60 steps interleaved, on a shared
2-core machine) took the twin 94-114 ms median / 74 ms best on 1 thread, the HookedTransformer
133-160 ms / 96-101 ms, 1.40-1.42x (best: 1.31-1.36x), three runs; on 2 threads 61 vs 81 ms
median (1.33x). Its einsum attention, materialised patterns, three LayerNorm calls per block
and hook points cost that against ``F.scaled_dot_product_attention`` with fused QKV.

The twin computes exactly the same function (pre-LN blocks, GELU MLP,
LayerNorm eps 1e-5, 1/sqrt(d_head) attention scale, and either learned absolute positions or
TransformerLens' GPT-NeoX-style rotary embedding on all of d_head, run by TransformerLens' own
code, :class:`Rotary`); :func:`to_hooked_state_dict` maps its weights to TransformerLens names,
and a test checks the two give equal logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from transformer_lens import HookedTransformerConfig
from transformer_lens.components.abstract_attention import AbstractAttention

from data.organism.config import ModelConfig
from data.organism.model import hooked_config


class Rotary(nn.Module):
    """TransformerLens' rotary embedding, computed by TransformerLens' own code.

    The tables come from its ``calculate_sin_cos_rotary`` and queries and keys are rotated by
    its ``apply_rotary``, both borrowed from its attention class (they read only ``cfg``,
    ``attn_type`` and the two tables; borrowing them builds no attention weights and draws no
    random numbers), so the twin's rotary is the HookedTransformer's by construction. Autograd
    runs through ``apply_rotary``, and training is bit-identical to the hand-written rotation
    it replaced (tiny and default presets, 20 steps); a step costs 2-6% more (best of 60,
    1 thread: 74-75 vs 70-73 ms), the price of a single rotary implementation.
    """

    calculate_sin_cos_rotary = AbstractAttention.calculate_sin_cos_rotary
    rotate_every_two = AbstractAttention.rotate_every_two
    apply_rotary = AbstractAttention.apply_rotary
    _rotary_base = AbstractAttention._rotary_base

    def __init__(self, cfg: HookedTransformerConfig) -> None:
        super().__init__()
        self.cfg, self.attn_type = cfg, "global"
        sin, cos = self.calculate_sin_cos_rotary(cfg.rotary_dim, cfg.n_ctx,
                                                 base=self._rotary_base(), dtype=cfg.dtype)
        self.register_buffer("rotary_sin", sin, persistent=False)  # (n_ctx, d_head)
        self.register_buffer("rotary_cos", cos, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (batch, pos, head, d_head), rotated at positions 0..pos-1."""
        return self.apply_rotary(x)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.fc_in = nn.Linear(d, cfg.d_mlp)
        self.fc_out = nn.Linear(cfg.d_mlp, d)

    def forward(self, x: torch.Tensor, rotary: Rotary | None = None) -> torch.Tensor:
        qkv = rearrange(self.qkv(self.ln1(x)), "b p (n h e) -> n b p h e", n=3, h=self.n_heads)
        q, k, v = qkv  # each (batch, pos, head, d_head), x: (batch, pos, d_model)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, head, pos, d_head)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (batch, head, pos, d_head)
        x = x + self.out(rearrange(z, "b h p e -> b p (h e)"))
        return x + self.fc_out(F.gelu(self.fc_in(self.ln2(x))))


class OrganismNet(nn.Module):
    """Decoder-only transformer with the organism's architecture."""

    def __init__(self, cfg: ModelConfig, d_vocab: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(d_vocab, cfg.d_model)
        self.pos = nn.Embedding(cfg.n_ctx, cfg.d_model) if cfg.positional == "learned" else None
        self.rotary = Rotary(hooked_config(cfg, d_vocab)) if cfg.positional == "rotary" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, d_vocab)
        # TransformerLens' default init scale: 0.02 (GPT-2's, for d_model 768) is ~5x smaller
        # relative to d_model 64 and left induction heads on a plateau for thousands of steps.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=cfg.weight_std)
            elif not name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens: (batch, pos)
        n_pos = tokens.shape[1]
        x = self.embed(tokens)  # (batch, pos, d_model)
        if self.pos is not None:
            x = x + self.pos.weight[:n_pos]
        for block in self.blocks:
            x = block(x, self.rotary)
        return self.unembed(self.ln_final(x))  # (batch, pos, d_vocab)


def to_hooked_state_dict(net: OrganismNet) -> dict[str, torch.Tensor]:
    """The net's weights under TransformerLens ``HookedTransformer`` names and shapes."""
    h = net.cfg.n_heads
    sd = {"embed.W_E": net.embed.weight,
          "ln_final.w": net.ln_final.weight, "ln_final.b": net.ln_final.bias,
          "unembed.W_U": net.unembed.weight.T, "unembed.b_U": net.unembed.bias}
    if net.pos is not None:
        sd["pos_embed.W_pos"] = net.pos.weight
    for i, blk in enumerate(net.blocks):
        pre = f"blocks.{i}."
        w_q, w_k, w_v = blk.qkv.weight.chunk(3, dim=0)  # each (d_model_out, d_model_in)
        b_q, b_k, b_v = blk.qkv.bias.chunk(3)
        for name, w, b in (("Q", w_q, b_q), ("K", w_k, b_k), ("V", w_v, b_v)):
            sd[pre + f"attn.W_{name}"] = rearrange(w, "(h e) d -> h d e", h=h)
            sd[pre + f"attn.b_{name}"] = rearrange(b, "(h e) -> h e", h=h)
        sd[pre + "attn.W_O"] = rearrange(blk.out.weight, "d (h e) -> h e d", h=h)
        sd[pre + "attn.b_O"] = blk.out.bias
        sd[pre + "ln1.w"], sd[pre + "ln1.b"] = blk.ln1.weight, blk.ln1.bias
        sd[pre + "ln2.w"], sd[pre + "ln2.b"] = blk.ln2.weight, blk.ln2.bias
        sd[pre + "mlp.W_in"], sd[pre + "mlp.b_in"] = blk.fc_in.weight.T, blk.fc_in.bias
        sd[pre + "mlp.W_out"], sd[pre + "mlp.b_out"] = blk.fc_out.weight.T, blk.fc_out.bias
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}
