"""Fast exact patching for standard causal decoders: recompute only what a patch can change.

``transformer_lens.patching`` runs a whole forward pass per patch, and the hook engine of
:mod:`analyses.causal.batched` still runs every position of every layer from the patched
layer on. For a causal decoder most of that is provably unchanged by the patch:

1. layers before the patched one are unchanged (the pass starts at the patched layer);
2. positions before ``p0``, the first position where clean and corrupted prompts differ, are
   identical in both runs, so every patched run equals the baseline there: only positions
   ``>= p0`` are recomputed, attending to the prefix keys and values of the baseline run;
3. a patch of ``z``, ``attn_out``, ``mlp_out`` or a residual enters the residual stream right
   after its sublayer, so the pass starts there (``z`` goes through ``W_O`` only), not at the
   start of the block;
4. when the metric reads one position per prompt (``PatchPair.score_pos``), the last block
   computes queries, MLP and unembedding at that position only.

The blocks run on TransformerLens' own weights and rotary tables as fused plain tensor code
(:class:`DecoderMath`); tests check the results against
``transformer_lens.patching`` to 1e-4. TransformerLens has no such partial forward pass (its
``start_at_layer`` covers fact 1 only), hence this module: it is the project's one transformer
forward besides TransformerLens' (layer dropping runs TransformerLens' own blocks; the
organism's training twin, :mod:`data.organism.net`, is kept for a measured reason given
there). Models outside the supported architecture (see :func:`unsupported_reason`), and models
with hooks attached (the fast pass would silently skip them), use the hook engine instead.

Shape comments use docs/GLOSSARY.md's dimension names: ``rows`` = ``patch * batch`` (row
``g * batch + b``), ``suffix`` = the positions ``>= p0``, ``key_pos`` = ``p0 + suffix`` keys;
in a full forward (:meth:`DecoderMath.forward`) rows are ``batch`` and the suffix is ``pos``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformer_lens.utils import get_act_name

FAST_COMPONENTS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z")
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def unsupported_reason(model) -> str | None:
    """Why the fast engine cannot run ``model`` exactly, or None when it can."""
    cfg = model.cfg
    checks = (
        (type(model).__name__ != "HookedTransformer", "it is not a HookedTransformer decoder"),
        (cfg.attention_dir != "causal", "its attention is not causal"),
        (cfg.positional_embedding_type not in ("standard", "rotary"),
         f"positional embedding {cfg.positional_embedding_type!r} is not standard or rotary"),
        (bool(getattr(cfg, "use_dynamic_ntk_rope", False)), "its rotary base depends on length"),
        (cfg.normalization_type not in ("LN", "LNPre"),
         f"normalization {cfg.normalization_type!r} is not LN/LNPre"),
        (cfg.act_fn not in ACTIVATIONS, f"activation {cfg.act_fn!r} is not supported"),
        (cfg.parallel_attn_mlp, "attention and MLP run in parallel"),
        (bool(getattr(cfg, "gated_mlp", False)), "its MLP is gated"),
        (cfg.n_key_value_heads is not None, "it uses grouped-query attention"),
        (cfg.use_local_attn, "it uses local attention"),
        (bool(getattr(cfg, "scale_attn_by_inverse_layer_idx", False)),
         "attention is scaled by layer index"),
        ((getattr(cfg, "attn_scores_soft_cap", -1.0) or -1.0) > 0
         or (getattr(cfg, "output_logits_soft_cap", -1.0) or -1.0) > 0, "it soft-caps"),
        (bool(getattr(cfg, "use_normalization_before_and_after", False)),
         "it normalises after sublayers"),
        (bool(getattr(cfg, "use_qk_norm", False)), "it normalises queries and keys"),
        (bool(getattr(cfg, "use_attention_sinks", False)), "it has attention sinks"),
        (bool(getattr(cfg, "num_experts", None)), "it is a mixture of experts"),
        (any(hp._forward_hooks or hp._backward_hooks for hp in model.hook_dict.values()),
         "hooks are attached to the model"),
    )
    return next((why for bad, why in checks if bad), None)


def first_difference(clean: torch.Tensor, corrupted: torch.Tensor,
                     score_pos: torch.Tensor | None) -> int:
    """p0: the first position where any clean/corrupted pair differs (capped by scored ones)."""
    differs = (clean != corrupted).any(0)  # (pos,)
    p0 = int(differs.nonzero()[0, 0]) if differs.any() else clean.shape[1] - 1
    if score_pos is not None:
        p0 = min(p0, int(score_pos.min()))
    return p0


def key_name(cfg, layer: int) -> str:
    """The keys attention reads: after the rotary embedding where the model has one."""
    rotary = cfg.positional_embedding_type == "rotary"
    return f"blocks.{layer}.attn.hook_rot_k" if rotary else get_act_name("k", layer)


def baseline_names(cfg) -> list[str]:
    """Activations of the run being patched that the fast engine reads."""
    kinds = ("resid_pre", "v") if cfg.attn_only else ("resid_pre", "resid_mid", "v")
    names = [get_act_name(kind, layer) for layer in range(cfg.n_layers) for kind in kinds]
    return names + [key_name(cfg, layer) for layer in range(cfg.n_layers)]


@dataclass(frozen=True)
class Entry:
    """Where a patched pass starts: block ``layer`` at its attention or its MLP sublayer."""

    layer: int
    stage: str  # "attn" | "mlp"


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x (..., in) @ w (in, out) + b as one ``addmm`` (the bias add fused into the GEMM)."""
    return torch.addmm(b, x.reshape(-1, x.shape[-1]), w).view(*x.shape[:-1], w.shape[1])


@dataclass(frozen=True)
class Rotary:
    """TransformerLens' rotary embedding, ``x * cos + rotate_every_two(x) * sin``, in place.

    The tables are the model's own (``attn.rotary_cos``/``rotary_sin``); only the application
    is fused. ``rotate_every_two`` is a signed permutation of the first ``rotary_dim``
    dimensions (of halves, or of adjacent pairs); its sign is folded into ``sin`` and the
    permuted product is added with two in-place ``addcmul`` on strided views instead of a
    gather, which costs a full copy of the queries and keys. Dimensions past ``rotary_dim``
    have cos 1 and pass.

    Why not TransformerLens' ``apply_rotary`` (measured, ``z`` sweep of the organism on IOI,
    1 thread, best of 15 interleaved runs, two runs each): with it the whole fast sweep took
    11.3-12.6 / 20.0-20.5 / 63.6-64.9 ms for 1 / 8 / 32 prompt pairs against 10.6-11.5 /
    19.1-19.4 / 58.0-61.2 ms fused, i.e. 4-12% longer (its clone, two slice copies and ``cat``
    per call), with results equal to 6e-6; it also takes positions as one offset, not the
    per-row scored positions the last block needs.
    """

    cos: torch.Tensor  # (pos, d_head): the model's cos (its first rotary_dim columns), then ones
    sin: torch.Tensor  # (pos, d_head[:rotary_dim]): the model's sin, times rotate_every_two's sign
    adjacent: bool  # pairs (x0, x1) rather than halves

    @classmethod
    def of(cls, attn) -> Rotary:
        cfg = attn.cfg
        rd, e = cfg.rotary_dim, cfg.d_head
        idx = torch.arange(rd)
        if cfg.rotary_adjacent_pairs:  # [x0, x1] -> [-x1, x0]
            sign = torch.where(idx % 2 == 0, -1.0, 1.0)
        else:  # first half <- -(second half), second half <- first half
            sign = torch.where(idx < rd // 2, -1.0, 1.0)
        cos, sin = attn.rotary_cos, attn.rotary_sin  # (pos, d_head[:rotary_dim]) each
        ones = torch.ones(cos.shape[0], e - rd, dtype=cos.dtype, device=cos.device)
        return cls(torch.cat([cos, ones], 1), sin * sign.to(sin), bool(cfg.rotary_adjacent_pairs))

    def __call__(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (rows, suffix, head, d_head) at positions pos (suffix,) or (rows, suffix), all
        < len(cos)."""
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


def ln_params(module, cfg) -> tuple:
    """(w, b) of a LayerNorm module, or (None, None) for LNPre (no affine) or no module."""
    if module is None or cfg.normalization_type == "LNPre":
        return None, None
    return module.w, module.b


@dataclass(frozen=True)
class LayerWeights:
    """One block's weights, fused and laid out for :class:`DecoderMath`."""

    ln1: tuple  # (w, b) or (None, None) for LNPre
    w_qkv: torch.Tensor  # (d_model, 3 * head * d_head), columns (q heads, k heads, v heads)
    b_qkv: torch.Tensor
    w_o: torch.Tensor  # (head * d_head, d_model)
    b_o: torch.Tensor
    ln2: tuple
    w_in: torch.Tensor | None  # (d_model, d_mlp); None for attention-only models
    b_in: torch.Tensor | None
    w_out: torch.Tensor | None
    b_out: torch.Tensor | None
    rotary: Rotary | None

    @classmethod
    def of(cls, block, cfg) -> LayerWeights:
        attn, d = block.attn, cfg.d_model
        w = torch.cat([attn.W_Q, attn.W_K, attn.W_V], dim=0)  # (3 * head, d_model, d_head)
        b = torch.cat([attn.b_Q, attn.b_K, attn.b_V], dim=0)  # (3 * head, d_head)
        mlp = None if cfg.attn_only else block.mlp
        rotary = Rotary.of(attn) if cfg.positional_embedding_type == "rotary" else None
        return cls(
            ln_params(block.ln1, cfg), w.permute(1, 0, 2).reshape(d, -1).contiguous(),
            b.reshape(-1), attn.W_O.reshape(-1, d), attn.b_O,
            ln_params(getattr(block, "ln2", None), cfg),
            *((mlp.W_in, mlp.b_in, mlp.W_out, mlp.b_out) if mlp is not None else (None,) * 4),
            rotary,
        )


class DecoderMath:
    """The blocks of a supported decoder as plain tensor code on TransformerLens' weights.

    Why not the model's own blocks: they run attention as einsums over materialised patterns,
    rotary as several copies, and biases as separate adds, with hook dispatch around each; at
    the organism's size that overhead costs more than the arithmetic. Here each linear map is
    one ``addmm``, attention one ``baddbmm`` + softmax + ``bmm`` over all (row, head) pairs and
    rotary one fused multiply-add; tests check every activation against the hook points.
    """

    def __init__(self, model) -> None:
        self.model, self.cfg = model, model.cfg
        self.act = ACTIVATIONS[self.cfg.act_fn]
        self.layers = [LayerWeights.of(block, self.cfg) for block in model.blocks]
        self.ln_final = ln_params(model.ln_final, self.cfg)
        self.scale = 1.0 / self.cfg.attn_scale if self.cfg.use_attn_scale else 1.0
        self.h, self.e = self.cfg.n_heads, self.cfg.d_head

    def norm(self, x: torch.Tensor, ln: tuple) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), ln[0], ln[1], eps=self.cfg.eps)

    def rotate_qk(self, layer: int, qk: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Queries and/or keys (rows, suffix, head or 2 * head, d_head) after the rotary
        embedding (unchanged without)."""
        rotary = self.layers[layer].rotary
        return qk if rotary is None else rotary(qk, pos)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """z (rows, suffix, head, d_head) of queries q (rows, suffix, head, d_head) over keys
        and values (rows, head, key_pos, d_head).

        mask: additive float, (suffix, key_pos) for all rows or (rows, 1, key_pos) per row.
        """
        n_rows, n_q, h, e = q.shape
        n_k = k.shape[2]
        qh = q.transpose(1, 2).reshape(n_rows * h, n_q, e)
        kt = k.reshape(n_rows * h, n_k, e).transpose(1, 2)
        if mask.ndim == 2:
            scores = torch.baddbmm(mask.expand(n_rows * h, n_q, n_k), qh, kt, alpha=self.scale)
        else:
            scores = torch.bmm(qh, kt).mul_(self.scale)
            scores.view(n_rows, h, n_q, n_k).add_(mask[:, None])
        v = v.reshape(n_rows * h, n_k, e)
        z = torch.bmm(scores.softmax(-1), v)  # (rows * head, suffix, d_head)
        return z.view(n_rows, h, n_q, e).transpose(1, 2)

    def attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """(rows, suffix, d_model) from z (rows, suffix, head, d_head)."""
        lw = self.layers[layer]
        return linear(z.reshape(*z.shape[:2], -1), lw.w_o, lw.b_o)

    def mlp_out(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        lw = self.layers[layer]
        hidden = self.act(linear(self.norm(resid_mid, lw.ln2), lw.w_in, lw.b_in))
        return linear(hidden, lw.w_out, lw.b_out)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return linear(self.norm(x, self.ln_final), self.model.unembed.W_U,
                      self.model.unembed.b_U)

    def forward(self, tokens: torch.Tensor, names: set[str],
                score_pos: torch.Tensor | None = None):
        """A plain forward pass recording the activations ``names`` (TransformerLens names).

        Returns (output, {name: activation}): output is the logits (batch, pos, d_vocab), or
        (batch, d_vocab) at ``score_pos`` (batch,) when given; the activations equal the
        model's hook points (tested).
        """
        acts: dict[str, torch.Tensor] = {}

        def keep(name: str, value: torch.Tensor) -> None:
            if name in names:
                acts[name] = value

        n_rows, n_pos = tokens.shape
        h = self.h
        if n_pos > self.cfg.n_ctx:
            raise ValueError(f"prompts have {n_pos} tokens, more than the model's context of "
                             f"{self.cfg.n_ctx}: shorten them")
        pos = torch.arange(n_pos, device=tokens.device)
        x = self.model.embed.W_E[tokens]  # (batch, pos, d_model)
        if self.cfg.positional_embedding_type == "standard":
            x = x + self.model.pos_embed.W_pos[:n_pos]
        mask = causal_mask(pos, n_pos, x.dtype)  # (pos, pos)
        for layer, lw in enumerate(self.layers):
            keep(get_act_name("resid_pre", layer), x)
            qkv = linear(self.norm(x, lw.ln1), lw.w_qkv, lw.b_qkv).view(n_rows, n_pos, 3 * h,
                                                                        self.e)
            keep(get_act_name("k", layer), qkv[:, :, h : 2 * h])
            q, k = self.rotate_qk(layer, qkv[:, :, : 2 * h], pos).split(h, dim=2)
            v = qkv[:, :, 2 * h :]
            keep(key_name(self.cfg, layer), k)
            keep(get_act_name("v", layer), v)
            # z: (batch, pos, head, d_head)
            z = self.attend(q, k.transpose(1, 2), v.transpose(1, 2), mask)
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


class FastDecoder:
    """Partial forward passes of one decoder around one baseline run (the run being patched).

    ``base`` holds that run's activations (see :func:`baseline_names`), ``base_out`` its output
    (batch, pos, d_vocab), needed only when ``score_pos`` (batch,), the positions the metric
    reads, is None.
    """

    def __init__(self, math: DecoderMath, base: dict[str, torch.Tensor],
                 base_out: torch.Tensor | None, p0: int, score_pos: torch.Tensor | None) -> None:
        self.math, self.cfg, self.p0 = math, math.cfg, p0
        self.base, self.base_out = base, base_out
        ref = base[get_act_name("resid_pre", 0)]  # (batch, pos, d_model)
        self.batch, n_pos = ref.shape[:2]
        self.pos = torch.arange(p0, n_pos, device=ref.device)  # positions recomputed
        self.mask = causal_mask(self.pos, n_pos, ref.dtype)  # (suffix, key_pos)
        self.score_pos = None if score_pos is None else score_pos.to(ref.device)
        if self.score_pos is None and base_out is None:
            raise ValueError("FastDecoder needs base_out when no score_pos is given")
        self.prefix = [self._prefix(layer) for layer in range(self.cfg.n_layers)]

    def entry(self, component: str, layer: int, mixed: torch.Tensor):
        """(residual (rows, suffix, d_model) at the entry point, Entry) for patched
        activations ``mixed``.

        mixed: (rows, suffix, ...) the patched activation ``component`` of ``layer`` in every
        row, at positions ``p0..`` only (rows = patch * batch, row ``g * batch + b``).
        """
        def plus_base(name: str, delta: torch.Tensor) -> torch.Tensor:
            base = self.base[get_act_name(name, layer)][:, self.p0 :]  # (batch, suffix, d_model)
            # via (patch, batch, suffix, d_model)
            return (delta.view(-1, *base.shape) + base).view(delta.shape)

        if component == "resid_pre":
            return mixed, Entry(layer, "attn")
        if component == "resid_mid":
            return mixed, Entry(layer, "mlp")
        if component == "resid_post":
            return mixed, Entry(layer + 1, "attn")
        if component == "attn_out":
            return plus_base("resid_pre", mixed), Entry(layer, "mlp")
        if component == "mlp_out":
            return plus_base("resid_mid", mixed), Entry(layer + 1, "attn")
        if component == "z":
            return plus_base("resid_pre", self.math.attn_out(layer, mixed)), Entry(layer, "mlp")
        raise ValueError(f"component {component!r} has no fast entry; use {FAST_COMPONENTS}")

    def run(self, x: torch.Tensor, entry: Entry) -> torch.Tensor:
        """Output of every row: (rows, pos, d_vocab), or (rows, d_vocab) at the scored
        positions."""
        reps = x.shape[0] // self.batch
        gathered = False
        for layer in range(entry.layer, self.cfg.n_layers):
            last = self.score_pos is not None and layer == self.cfg.n_layers - 1
            if layer != entry.layer or entry.stage == "attn":
                x = self._attention(layer, x, reps, gather=last)
            elif last:
                x = self._gather(x, reps)
            gathered = gathered or last
            if not self.cfg.attn_only:
                x = self.math.mlp_out(layer, x).add_(x)
        if self.score_pos is not None and not gathered:
            x = self._gather(x, reps)
        logits = self.math.logits(x)  # (rows, suffix or 1, d_vocab)
        if self.score_pos is not None:
            return logits[:, 0]
        head = self.base_out[:, : self.p0].repeat(reps, 1, 1)  # unchanged positions
        return torch.cat([head, logits], dim=1)

    def _prefix(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Baseline keys and values of positions < p0: (batch, head, p0, d_head) each."""
        k = self.base[key_name(self.cfg, layer)][:, : self.p0]
        v = self.base[get_act_name("v", layer)][:, : self.p0]
        return k.transpose(1, 2), v.transpose(1, 2)

    def _with_prefix(self, prefix: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """All keys (or values) (rows, head, key_pos, d_head): the baseline prefix (batch,
        head, p0, d_head), then ``new`` (rows, suffix, head, d_head), written once into one
        buffer (no repeat + cat)."""
        n_rows, n_new, h, e = new.shape
        out = new.new_empty(n_rows // self.batch, self.batch, h, self.p0 + n_new, e)
        out[:, :, :, : self.p0] = prefix
        out[:, :, :, self.p0 :] = new.view(*out.shape[:2], n_new, h, e).transpose(2, 3)
        return out.view(n_rows, h, self.p0 + n_new, e)

    def _local_score_pos(self, reps: int) -> torch.Tensor:
        return self.score_pos.repeat(reps) - self.p0  # (rows,) index into positions p0..

    def _gather(self, x: torch.Tensor, reps: int) -> torch.Tensor:
        """x (rows, suffix, d_model) -> (rows, 1, d_model) at each row's scored position."""
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, self._local_score_pos(reps)][:, None]

    def _attention(self, layer: int, x: torch.Tensor, reps: int, gather: bool) -> torch.Tensor:
        """x (rows, suffix, d_model) after block ``layer``'s attention: (rows, suffix,
        d_model), or (rows, 1, d_model) at the scored positions when ``gather`` (then only
        those positions' queries are computed)."""
        math, lw, h, e = self.math, self.math.layers[layer], self.math.h, self.math.e
        n_rows, n_new, _ = x.shape
        normed = math.norm(x, lw.ln1)  # (rows, suffix, d_model)
        hd = h * e
        if gather:
            local = self._local_score_pos(reps)  # (rows,)
            rows = torch.arange(n_rows, device=x.device)
            kv = linear(normed, lw.w_qkv[:, hd:], lw.b_qkv[hd:]).view(n_rows, n_new, 2 * h, e)
            k, v = math.rotate_qk(layer, kv[:, :, :h], self.pos), kv[:, :, h:]
            q = linear(normed[rows, local], lw.w_qkv[:, :hd], lw.b_qkv[:hd]).view(n_rows, 1, h, e)
            q = math.rotate_qk(layer, q, (local + self.p0)[:, None])
            mask = self.mask[local][:, None]  # (rows, 1, key_pos)
            x = x[rows, local][:, None]  # (rows, 1, d_model)
        else:
            qkv = linear(normed, lw.w_qkv, lw.b_qkv).view(n_rows, n_new, 3 * h, e)
            q, k = math.rotate_qk(layer, qkv[:, :, : 2 * h], self.pos).split(h, dim=2)
            v, mask = qkv[:, :, 2 * h :], self.mask
        k_pre, v_pre = self.prefix[layer]
        z = math.attend(q, self._with_prefix(k_pre, k), self._with_prefix(v_pre, v), mask)
        return math.attn_out(layer, z).add_(x)


def fast_patched_metrics(
    engine: FastDecoder,
    component: str,
    layer: int,
    source_act: torch.Tensor,
    base_act: torch.Tensor,
    masks: torch.Tensor,
    score: Callable[[torch.Tensor], torch.Tensor],
    max_rows: int,
) -> torch.Tensor:
    """Metric under each patch, like :func:`analyses.causal.batched.patched_metrics`.

    source_act, base_act: (batch, pos, *act) the activation in the source run and in the run
    being patched; masks: (patch, pos, *act) bool, True where the source value is taken.
    Returns (patch,) float; ``score`` maps one patch's output rows (batch, ...) to its metric.
    """
    from analyses.causal.batched import chunked_metrics

    p0 = engine.p0  # positions < p0 are equal in both runs: only p0.. can change
    source_act, base_act, masks = source_act[:, p0:], base_act[:, p0:], masks[:, p0:]

    def run_chunk(chunk: torch.Tensor) -> torch.Tensor:
        # (patch, batch, suffix, ..) -> rows
        mixed = torch.where(chunk[:, None], source_act[None], base_act[None])
        return engine.run(*engine.entry(component, layer, mixed.flatten(0, 1)))

    return chunked_metrics(masks, base_act.shape[0], max_rows, run_chunk, score)
