"""The blocks of a supported decoder as plain tensor code on TransformerLens' weights.

Why not the model's own blocks: they run attention as einsums over materialised patterns,
rotary as several copies, biases as separate adds, GQA by ``repeat_interleave`` of keys and
values, and (TransformerLens 3.9) the gated MLP as ``F.linear(x, W.T.contiguous())``, i.e. a
copy of each MLP weight on every call, with hook dispatch around each. Here the weights are
fused and laid out once per model (:class:`LayerWeights`): each linear map is one ``addmm``/
``mm`` (q, k, v in one; gate and input projections of a gated MLP in one), attention one
``baddbmm`` + softmax + ``bmm`` per (row, key/value head) with the query heads of a group
stacked (no repeated keys), and rotary one fused multiply-add. Tests check every activation
against the hook points.

Shape comments use docs/GLOSSARY.md's dimension names; ``kv_head`` is a key/value head
(``head`` itself without GQA), ``group`` the query heads sharing one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens.utils import get_act_name

from analyses.causal.fast.arch import ACTIVATIONS, grouped, kv_heads


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (..., in) @ w (in, out) + b as one ``addmm`` (the bias add fused into the GEMM)."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.mm(flat, w) if b is None else torch.addmm(b, flat, w)
    return out.view(*x.shape[:-1], w.shape[1])


@dataclass(frozen=True)
class Norm:
    """TransformerLens' LayerNorm/LNPre (``layer_norm``), RMSNorm/RMSPre (``rms_norm``:
    x / sqrt(mean(x^2) + eps) * w) or no normalisation (``none``)."""

    kind: str  # "layer_norm" | "rms_norm" | "none"
    w: torch.Tensor | None
    b: torch.Tensor | None
    eps: float

    @classmethod
    def of(cls, module, cfg) -> Norm:
        kind = cfg.normalization_type
        if module is None or kind is None:
            return cls("none", None, None, cfg.eps)
        affine = kind in ("LN", "RMS")
        w = module.w if affine else None
        b = module.b if kind == "LN" else None
        return cls("rms_norm" if kind.startswith("RMS") else "layer_norm", w, b, cfg.eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "rms_norm":
            return F.rms_norm(x, (x.shape[-1],), self.w, eps=self.eps)
        if self.kind == "layer_norm":
            return F.layer_norm(x, (x.shape[-1],), self.w, self.b, eps=self.eps)
        return x


class Rotary:
    """TransformerLens' rotary embedding, ``x * cos + rotate_every_two(x) * sin``.

    The tables are the model's own (``attn.rotary_cos``/``rotary_sin``); TransformerLens 3.9
    builds them with ``min(n_ctx, 2048)`` rows and extends them on demand up to ``n_ctx``, so
    longer tables are computed with the model's own ``calculate_sin_cos_rotary`` (as its
    extension does), and positions past ``n_ctx`` are refused with a clear error. Only the
    application is fused. ``rotate_every_two`` is a signed permutation of the first
    ``rotary_dim`` dimensions (of halves, or of adjacent pairs); its sign is folded into
    ``sin`` and the permuted product is added with two in-place ``addcmul`` on strided views
    instead of a gather, which costs a full copy of the queries and keys. Dimensions past
    ``rotary_dim`` have cos 1 and pass.

    Why not TransformerLens' ``apply_rotary`` (measured, ``z`` sweep of the organism on IOI,
    1 thread, best of 15 interleaved runs, two runs each): with it the whole fast sweep took
    11.3-12.6 / 20.0-20.5 / 63.6-64.9 ms for 1 / 8 / 32 prompt pairs against 10.6-11.5 /
    19.1-19.4 / 58.0-61.2 ms fused, i.e. 4-12% longer (its clone, two slice copies and ``cat``
    per call), with results equal to 6e-6; it also takes positions as one offset, not the
    per-row scored positions the last block needs.
    """

    def __init__(self, attn) -> None:
        self.attn, self.cfg = attn, attn.cfg
        self.adjacent = bool(self.cfg.rotary_adjacent_pairs)
        self._tables(attn.rotary_sin, attn.rotary_cos)

    def _tables(self, sin: torch.Tensor, cos: torch.Tensor) -> None:
        cfg = self.cfg
        rd, e = cfg.rotary_dim, cfg.d_head
        idx = torch.arange(rd)
        if self.adjacent:  # [x0, x1] -> [-x1, x0]
            sign = torch.where(idx % 2 == 0, -1.0, 1.0)
        else:  # first half <- -(second half), second half <- first half
            sign = torch.where(idx < rd // 2, -1.0, 1.0)
        ones = torch.ones(cos.shape[0], e - rd, dtype=cos.dtype, device=cos.device)
        self.cos = torch.cat([cos, ones], 1)  # (pos, d_head)
        self.sin = sin * sign.to(sin)  # (pos, d_head[:rotary_dim])

    def reserve(self, n_pos: int) -> None:
        """Make the tables cover positions < n_pos; ValueError past the model's n_ctx."""
        n_ctx = self.cfg.n_ctx
        if n_pos > n_ctx:
            raise ValueError(f"prompts of {n_pos} tokens are longer than the model's context "
                             f"(n_ctx = {n_ctx}; TransformerLens' rotary tables have at most "
                             f"n_ctx rows): shorten them to {n_ctx} tokens or fewer")
        if n_pos > self.cos.shape[0]:
            size = min(n_ctx, max(n_pos, 2 * self.cos.shape[0]))
            sin, cos = self.attn.calculate_sin_cos_rotary(
                self.cfg.rotary_dim, size, base=self.attn._rotary_base(), dtype=self.cfg.dtype)
            self._tables(sin.to(self.cos.device), cos.to(self.cos.device))

    def __call__(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (rows, suffix, head, d_head) at positions pos (suffix,) or (rows, suffix)."""
        cos, sin = self.cos[pos].unsqueeze(-2), self.sin[pos].unsqueeze(-2)  # (.., 1, d_head)
        out = x * cos
        rd = sin.shape[-1]
        if self.adjacent:
            xs, outs, sins = (t[..., :rd].unflatten(-1, (rd // 2, 2)) for t in (x, out, sin))
            outs[..., 0].addcmul_(xs[..., 1], sins[..., 0])
            outs[..., 1].addcmul_(xs[..., 0], sins[..., 1])
        else:
            h = rd // 2
            out[..., :h].addcmul_(x[..., h:rd], sin[..., :h])
            out[..., h:rd].addcmul_(x[..., :h], sin[..., h:])
        return out


@dataclass(frozen=True)
class LayerWeights:
    """One block's weights, fused and laid out once for :class:`DecoderMath`."""

    ln1: Norm
    w_qkv: torch.Tensor  # (d_model, (head + 2 * kv_head) * d_head): q heads, k heads, v heads
    b_qkv: torch.Tensor
    w_o: torch.Tensor  # (head * d_head, d_model)
    b_o: torch.Tensor
    ln2: Norm
    w_in: torch.Tensor | None  # (d_model, d_mlp), gated: (d_model, 2 * d_mlp) = [gate, in]
    b_in: torch.Tensor | None  # plain MLP: the input bias; gated: None (no bias on the GEMM)
    b_post: torch.Tensor | None  # gated MLP: b_in, added after act(gate) * in, as TL does
    w_out: torch.Tensor | None  # (d_mlp, d_model)
    b_out: torch.Tensor | None

    @classmethod
    def of(cls, block, cfg) -> LayerWeights:
        attn, d = block.attn, cfg.d_model
        wk, bk, wv, bv = ((attn._W_K, attn._b_K, attn._W_V, attn._b_V) if grouped(cfg)
                          else (attn.W_K, attn.b_K, attn.W_V, attn.b_V))
        w = torch.cat([attn.W_Q, wk, wv], dim=0)  # (head + 2 * kv_head, d_model, d_head)
        b = torch.cat([attn.b_Q, bk, bv], dim=0)  # (head + 2 * kv_head, d_head)
        mlp = None if cfg.attn_only else block.mlp
        gated = bool(cfg.gated_mlp) and mlp is not None
        if mlp is None:
            mlp_w = (None,) * 5
        elif gated:
            mlp_w = (torch.cat([mlp.W_gate, mlp.W_in], 1).contiguous(), None, mlp.b_in,
                     mlp.W_out.contiguous(), mlp.b_out)
        else:
            mlp_w = (mlp.W_in, mlp.b_in, None, mlp.W_out, mlp.b_out)
        return cls(Norm.of(block.ln1, cfg), w.permute(1, 0, 2).reshape(d, -1).contiguous(),
                   b.reshape(-1).contiguous(), attn.W_O.reshape(-1, d).contiguous(), attn.b_O,
                   Norm.of(getattr(block, "ln2", None), cfg), *mlp_w)


class DecoderMath:
    """The blocks of a supported decoder (see :func:`analyses.causal.fast.arch
    .unsupported_reason`) as plain, differentiable tensor code on TransformerLens' weights,
    built once per model (module docstring)."""

    def __init__(self, model) -> None:
        self.model, self.cfg = model, model.cfg
        cfg = self.cfg
        self.act = ACTIVATIONS.get(cfg.act_fn)
        with torch.no_grad():
            self.layers = [LayerWeights.of(block, cfg) for block in model.blocks]
            self.w_u = model.unembed.W_U.contiguous()  # (d_model, d_vocab)
        self.rotary = [Rotary(block.attn) for block in model.blocks] \
            if cfg.positional_embedding_type == "rotary" else None
        self.ln_final = Norm.of(getattr(model, "ln_final", None), cfg)
        self.scale = 1.0 / cfg.attn_scale if cfg.use_attn_scale else 1.0
        self.h, self.g, self.e = cfg.n_heads, kv_heads(cfg), cfg.d_head
        self.d_mlp = cfg.d_mlp

    def reserve(self, n_pos: int) -> None:
        """Check that prompts of ``n_pos`` tokens fit the model (clear error if not)."""
        if n_pos > self.cfg.n_ctx:
            raise ValueError(f"prompts have {n_pos} tokens, more than the model's context of "
                             f"{self.cfg.n_ctx} (n_ctx): shorten them")
        for rotary in self.rotary or ():
            rotary.reserve(n_pos)

    def rotate(self, layer: int, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Queries or keys (rows, suffix, heads, d_head) after the rotary embedding
        (unchanged without one)."""
        return x if self.rotary is None else self.rotary[layer](x, pos)

    def split_qkv(self, qkv: torch.Tensor):
        """q (.., head, d_head), k and v (.., kv_head, d_head) views of one fused projection."""
        h, g = self.h, self.g
        return qkv[..., :h, :], qkv[..., h : h + g, :], qkv[..., h + g :, :]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """z (rows, suffix, head, d_head) of queries q (rows, suffix, head, d_head) over keys
        and values (rows, kv_head, key_pos, d_head); query head i reads key/value head
        i // group, as TransformerLens' ``repeat_interleave`` does.

        mask: additive float, (suffix, key_pos) for all rows or (rows, 1, key_pos) per row.
        """
        n_rows, n_q, h, e = q.shape
        g, n_k = k.shape[1], k.shape[2]
        r = h // g  # query heads per key/value head
        qg = q.transpose(1, 2).reshape(n_rows * g, r * n_q, e)  # (rows*kv_head, group*suffix, ..)
        kt = k.reshape(n_rows * g, n_k, e).transpose(1, 2)
        if mask.ndim == 2:
            m = mask.repeat(r, 1) if r > 1 else mask  # (group * suffix, key_pos)
            scores = torch.baddbmm(m.expand(n_rows * g, r * n_q, n_k), qg, kt, alpha=self.scale)
        else:
            scores = torch.bmm(qg, kt).mul_(self.scale)
            scores.view(n_rows, g, r * n_q, n_k).add_(mask[:, None])
        z = torch.bmm(scores.softmax(-1), v.reshape(n_rows * g, n_k, e))
        return z.view(n_rows, h, n_q, e).transpose(1, 2)

    def attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """(rows, suffix, d_model) from z (rows, suffix, head, d_head)."""
        lw = self.layers[layer]
        return linear(z.reshape(*z.shape[:2], -1), lw.w_o, lw.b_o)

    def mlp_out(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        lw = self.layers[layer]
        pre = linear(lw.ln2(resid_mid), lw.w_in, lw.b_in)
        if lw.b_post is None:
            hidden = self.act(pre)
        else:  # gated: act(x W_gate) * (x W_in) + b_in
            gate, lin = pre.split(self.d_mlp, dim=-1)
            hidden = (self.act(gate) * lin).add_(lw.b_post)  # not in place: relu saves act
        return linear(hidden, lw.w_out, lw.b_out)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self.ln_final(x), self.w_u, self.model.unembed.b_U)

    def forward(self, tokens: torch.Tensor, names: set[str],
                score_pos: torch.Tensor | None = None):
        """A plain forward pass recording the activations ``names`` (TransformerLens names).

        Returns (output, {name: activation}): output is the logits (batch, pos, d_vocab), or
        (batch, d_vocab) at ``score_pos`` (batch,) when given; the activations equal the
        model's hook points (tested). Every recorded activation lies on the path to the
        output, so gradients of the output with respect to it are what the hook points'
        gradients would be.
        """
        acts: dict[str, torch.Tensor] = {}

        def keep(name: str, value: torch.Tensor) -> None:
            if name in names:
                acts[name] = value

        n_rows, n_pos = tokens.shape
        self.reserve(n_pos)
        pos = torch.arange(n_pos, device=tokens.device)
        x = self.model.embed.W_E[tokens]  # (batch, pos, d_model)
        if self.cfg.positional_embedding_type == "standard":
            x = x + self.model.pos_embed.W_pos[:n_pos]
        mask = causal_mask(pos, n_pos, x.dtype)  # (pos, pos)
        for layer, lw in enumerate(self.layers):
            keep(get_act_name("resid_pre", layer), x)
            qkv = linear(lw.ln1(x), lw.w_qkv, lw.b_qkv).view(n_rows, n_pos, -1, self.e)
            q, k, v = self.split_qkv(qkv)
            for kind, act in (("q", q), ("k", k), ("v", v)):
                keep(get_act_name(kind, layer), act)
            q, k = self.rotate(layer, q, pos), self.rotate(layer, k, pos)
            keep(f"blocks.{layer}.attn.hook_rot_q", q)
            keep(f"blocks.{layer}.attn.hook_rot_k", k)
            z = self.attend(q, k.transpose(1, 2), v.transpose(1, 2), mask)  # (batch, pos, ..)
            keep(get_act_name("z", layer), z)
            out = self.attn_out(layer, z)
            keep(get_act_name("attn_out", layer), out)
            x = x + out
            if not self.cfg.attn_only:
                keep(get_act_name("resid_mid", layer), x)
                out = self.mlp_out(layer, x)
                keep(get_act_name("mlp_out", layer), out)
                x = x + out
            keep(get_act_name("resid_post", layer), x)
        if score_pos is not None:
            x = x[torch.arange(n_rows, device=x.device), score_pos.to(x.device)]  # (batch, d_model)
        return self.logits(x), acts


def causal_mask(queries: torch.Tensor, n_keys: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (len(queries), n_keys): 0 where key <= query, -inf after."""
    keys = torch.arange(n_keys, device=queries.device)
    allowed = keys[None] <= queries[:, None]
    return torch.zeros(allowed.shape, dtype=dtype, device=queries.device).masked_fill_(
        ~allowed, -torch.inf)
