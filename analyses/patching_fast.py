"""Fast exact patching for standard causal decoders: recompute only what a patch can change.

``transformer_lens.patching`` runs a whole forward pass per patch, and the hook engine of
:mod:`analyses.patching_batched` still runs every position of every layer from the patched
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

The blocks run on TransformerLens' own weights (and its own rotary embedding) with fused QKV and
``F.scaled_dot_product_attention``; tests check the results against
``transformer_lens.patching`` to 1e-4. TransformerLens has no such partial forward pass (its
``start_at_layer`` covers fact 1 only), hence this module. Models outside the supported
architecture (see :func:`unsupported_reason`), and models with hooks attached (the fast pass
would silently skip them), use the hook engine instead.

Dimension names: R = G*B rows (G patches x B prompts, row ``g * B + b``), S = positions
``>= p0``, H heads, E = d_head, D = d_model, V = d_vocab.
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


class DecoderMath:
    """The blocks of a supported decoder as plain tensor code on TransformerLens' weights."""

    def __init__(self, model) -> None:
        self.model, self.cfg = model, model.cfg
        self.act = ACTIVATIONS[self.cfg.act_fn]
        self.qkv = [self._fused_qkv(block) for block in model.blocks]
        self.w_o = [block.attn.W_O.reshape(-1, self.cfg.d_model) for block in model.blocks]
        self.scale = 1.0 / self.cfg.attn_scale if self.cfg.use_attn_scale else 1.0

    def _fused_qkv(self, block) -> tuple[torch.Tensor, torch.Tensor]:
        attn = block.attn
        w = torch.cat([attn.W_Q, attn.W_K, attn.W_V], dim=0)  # (3H, D, E)
        b = torch.cat([attn.b_Q, attn.b_K, attn.b_V], dim=0)  # (3H, E)
        return w.permute(1, 0, 2).reshape(self.cfg.d_model, -1), b.reshape(-1)

    def norm(self, x: torch.Tensor, ln) -> torch.Tensor:
        if self.cfg.normalization_type == "LNPre":
            return F.layer_norm(x, (x.shape[-1],), eps=self.cfg.eps)
        return F.layer_norm(x, (x.shape[-1],), ln.w, ln.b, eps=self.cfg.eps)

    def qkv_heads(self, layer: int, x: torch.Tensor, offset: int = 0):
        """q, k, v of residual x (R, S, D) at positions offset.., each (R, H, S, E).

        Returns (q, k, v, k before the rotary embedding); q and k are rotated (rotary models).
        """
        n_rows, n_pos, _ = x.shape
        w, b = self.qkv[layer]
        qkv = self.norm(x, self.model.blocks[layer].ln1) @ w + b  # (R, S, 3*H*E)
        h, e = self.cfg.n_heads, self.cfg.d_head
        q, k, v = (t.reshape(n_rows, n_pos, h, e) for t in qkv.chunk(3, -1))  # (R, S, H, E)
        k_raw = k
        if self.cfg.positional_embedding_type == "rotary":
            attn = self.model.blocks[layer].attn
            q, k = attn.apply_rotary(q, offset), attn.apply_rotary(k, offset)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), k_raw

    def attend(self, layer: int, q, k, v, mask) -> torch.Tensor:
        """z (R, s, H, E) of queries q (R, H, s, E) over keys/values (R, H, n_keys, E)."""
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return z.transpose(1, 2)

    def attn_out(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """(R, s, D) from z (R, s, H, E)."""
        return z.flatten(2) @ self.w_o[layer] + self.model.blocks[layer].attn.b_O

    def mlp_out(self, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
        block = self.model.blocks[layer]
        hidden = self.act(self.norm(resid_mid, block.ln2) @ block.mlp.W_in + block.mlp.b_in)
        return hidden @ block.mlp.W_out + block.mlp.b_out

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x, self.model.ln_final) @ self.model.unembed.W_U + \
            self.model.unembed.b_U

    def forward(self, tokens: torch.Tensor, names: set[str]):
        """A plain forward pass recording the activations ``names`` (TransformerLens names).

        Returns (logits (B, pos, V), {name: activation}); the activations equal those of the
        model's hook points (tested).
        """
        acts: dict[str, torch.Tensor] = {}

        def keep(kind: str, layer: int, value: torch.Tensor) -> None:
            name = get_act_name(kind, layer)
            if name in names:
                acts[name] = value

        n_pos = tokens.shape[1]
        x = self.model.embed.W_E[tokens]  # (B, pos, D)
        if self.cfg.positional_embedding_type == "standard":
            x = x + self.model.pos_embed.W_pos[:n_pos]
        causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=x.device).tril()
        for layer in range(self.cfg.n_layers):
            keep("resid_pre", layer, x)
            q, k, v, k_raw = self.qkv_heads(layer, x)
            keep("k", layer, k_raw)
            if key_name(self.cfg, layer) in names:
                acts[key_name(self.cfg, layer)] = k.transpose(1, 2)
            keep("v", layer, v.transpose(1, 2))
            z = self.attend(layer, q, k, v, causal)  # (B, pos, H, E)
            keep("z", layer, z)
            out = self.attn_out(layer, z)
            keep("attn_out", layer, out)
            x = x + out
            if not self.cfg.attn_only:
                keep("resid_mid", layer, x)
                out = self.mlp_out(layer, x)
                keep("mlp_out", layer, out)
                x = x + out
            keep("resid_post", layer, x)
        return self.logits(x), acts


class FastDecoder:
    """Partial forward passes of one decoder around one baseline run (the run being patched).

    ``base`` holds that run's activations (see :func:`baseline_names`), ``base_out`` its output
    (B, pos, V); ``score_pos`` (B,) the positions the metric reads, or None for all.
    """

    def __init__(self, math: DecoderMath, base: dict[str, torch.Tensor],
                 base_out: torch.Tensor, p0: int, score_pos: torch.Tensor | None) -> None:
        self.math, self.cfg, self.p0 = math, math.cfg, p0
        self.base, self.base_out = base, base_out
        self.score_pos = None if score_pos is None else score_pos.to(base_out.device)
        self.prefix = [self._prefix(layer) for layer in range(self.cfg.n_layers)]

    def entry(self, component: str, layer: int, mixed: torch.Tensor):
        """(residual (R, S, D) at the entry point, Entry) for patched activations ``mixed``.

        mixed: (R, pos, ...) the patched activation ``component`` of ``layer`` in every row.
        """
        p0, reps = self.p0, mixed.shape[0] // self._batch
        mixed = mixed[:, p0:]
        tile = lambda name: self.base[get_act_name(name, layer)][:, p0:].repeat(reps, 1, 1)  # noqa: E731
        if component == "resid_pre":
            return mixed, Entry(layer, "attn")
        if component == "resid_mid":
            return mixed, Entry(layer, "mlp")
        if component == "resid_post":
            return mixed, Entry(layer + 1, "attn")
        if component == "attn_out":
            return tile("resid_pre") + mixed, Entry(layer, "mlp")
        if component == "mlp_out":
            return tile("resid_mid") + mixed, Entry(layer + 1, "attn")
        if component == "z":
            return tile("resid_pre") + self.math.attn_out(layer, mixed), Entry(layer, "mlp")
        raise ValueError(f"component {component!r} has no fast entry; use {FAST_COMPONENTS}")

    def run(self, x: torch.Tensor, entry: Entry) -> torch.Tensor:
        """Output of every row: (R, pos, V), or (R, V) at the scored positions."""
        reps = x.shape[0] // self._batch
        gathered = False
        for layer in range(entry.layer, self.cfg.n_layers):
            last = self.score_pos is not None and layer == self.cfg.n_layers - 1
            if layer != entry.layer or entry.stage == "attn":
                x = self._attention(layer, x, reps, gather=last)
            elif last:
                x = self._gather(x, reps)
            gathered = gathered or last
            if not self.cfg.attn_only:
                x = x + self.math.mlp_out(layer, x)
        if self.score_pos is not None and not gathered:
            x = self._gather(x, reps)
        logits = self.math.logits(x)  # (R, S or 1, V)
        if self.score_pos is not None:
            return logits[:, 0]
        head = self.base_out[:, : self.p0].repeat(reps, 1, 1)  # unchanged positions
        return torch.cat([head, logits], dim=1)

    @property
    def _batch(self) -> int:
        return self.base_out.shape[0]

    def _prefix(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Baseline keys and values of positions < p0: (B, H, p0, E) each."""
        k = self.base[key_name(self.cfg, layer)][:, : self.p0]
        v = self.base[get_act_name("v", layer)][:, : self.p0]
        return k.transpose(1, 2), v.transpose(1, 2)

    def _rows_score_pos(self, reps: int) -> torch.Tensor:
        return self.score_pos.repeat(reps)  # (R,)

    def _gather(self, x: torch.Tensor, reps: int) -> torch.Tensor:
        """x (R, S, D) -> (R, 1, D) at each row's scored position."""
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, self._rows_score_pos(reps) - self.p0][:, None]

    def _attention(self, layer: int, x: torch.Tensor, reps: int, gather: bool) -> torch.Tensor:
        n_rows, n_new, _ = x.shape
        q, k, v, _ = self.math.qkv_heads(layer, x, self.p0)  # (R, H, S, E) each
        k_pre, v_pre = (t.repeat(reps, 1, 1, 1) for t in self.prefix[layer])  # (R, H, p0, E)
        k, v = torch.cat([k_pre, k], dim=2), torch.cat([v_pre, v], dim=2)  # (R, H, p0+S, E)
        keys = torch.arange(self.p0 + n_new, device=x.device)
        if gather:
            local = self._rows_score_pos(reps) - self.p0  # (R,)
            rows = torch.arange(n_rows, device=x.device)
            q = q[rows, :, local][:, :, None]  # (R, H, 1, E)
            x = x[rows, local][:, None]  # (R, 1, D)
            mask = (keys[None] <= (local + self.p0)[:, None])[:, None, None]  # (R, 1, 1, p0+S)
        else:
            queries = torch.arange(self.p0, self.p0 + n_new, device=x.device)
            mask = keys[None] <= queries[:, None]  # (S, p0+S)
        return x + self.math.attn_out(layer, self.math.attend(layer, q, k, v, mask))


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
    """Metric under each patch, like :func:`analyses.patching_batched.patched_metrics`.

    source_act, base_act: (B, *act) the activation in the source run and in the run being
    patched; masks: (n_patch, *act) bool, True where the source value is taken.
    Returns (n_patch,) float; ``score`` maps one patch's output rows (B, ...) to its metric.
    """
    from analyses.patching_batched import chunked_metrics

    def run_chunk(chunk: torch.Tensor) -> torch.Tensor:
        mixed = torch.where(chunk[:, None], source_act[None], base_act[None])  # (G, B, *act)
        return engine.run(*engine.entry(component, layer, mixed.flatten(0, 1)))

    return chunked_metrics(masks, base_act.shape[0], max_rows, run_chunk, score)
