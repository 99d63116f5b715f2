"""A plain-PyTorch twin of the organism's HookedTransformer, used only to train it fast.

Why not train the ``HookedTransformer`` directly: on 2 CPU cores its einsum attention and
hook points cost ~30-40% more per step than ``F.scaled_dot_product_attention`` with fused
QKV. The twin computes exactly the same function (pre-LN blocks, GELU MLP, learned positions,
LayerNorm eps 1e-5, 1/sqrt(d_head) attention scale, and either learned absolute positions or
TransformerLens' GPT-NeoX-style rotary embedding on all of d_head); :func:`to_hooked_state_dict`
maps its weights to TransformerLens names, and a test checks the two give equal logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from data.organism.config import ModelConfig


def rotary_tables(n_ctx: int, d_head: int, base: float = 10000.0):
    """(cos, sin), each (n_ctx, d_head): TransformerLens' non-adjacent-pairs rotary angles."""
    freq = base ** (torch.arange(d_head // 2, dtype=torch.float32) / (d_head / 2))
    angles = torch.arange(n_ctx, dtype=torch.float32)[:, None] / freq.repeat(2)[None, :]
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x (batch, head, pos, d_head) with tables (pos, d_head)."""
    half = x.shape[-1] // 2
    flipped = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + flipped * sin


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.rotary = cfg.positional == "rotary"
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.fc_in = nn.Linear(d, cfg.d_mlp)
        self.fc_out = nn.Linear(cfg.d_mlp, d)

    def forward(self, x: torch.Tensor, rot=None) -> torch.Tensor:  # x: (batch, pos, d_model)
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = (rearrange(t, "b p (h e) -> b h p e", h=self.n_heads) for t in (q, k, v))
        if rot is not None:
            q, k = rotate(q, *rot), rotate(k, *rot)
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
        if cfg.positional == "rotary":
            cos, sin = rotary_tables(cfg.n_ctx, cfg.d_model // cfg.n_heads)
            self.register_buffer("rot_cos", cos, persistent=False)
            self.register_buffer("rot_sin", sin, persistent=False)
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
        rot = None
        if self.pos is not None:
            x = x + self.pos.weight[:n_pos]
        else:
            rot = (self.rot_cos[:n_pos], self.rot_sin[:n_pos])
        for block in self.blocks:
            x = block(x, rot)
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
