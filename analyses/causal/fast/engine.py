"""Partial forward passes around one baseline run: what :mod:`analyses.causal.fast` runs.

Shape comments use docs/GLOSSARY.md's dimension names: ``rows`` = ``patch * batch`` (row
``g * batch + b``), ``suffix`` = the positions ``>= p0``, ``key_pos`` = ``p0 + suffix`` keys,
``kv_head`` = a key/value head (``head`` without GQA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformer_lens.utils import get_act_name

from analyses.causal.fast.arch import FAST_COMPONENTS
from analyses.causal.fast.blocks import DecoderMath, causal_mask, linear

QKV = ("q", "k", "v")


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


def baseline_names(cfg, component: str | None = None, layers=()) -> list[str]:
    """Activations of the run being patched that the fast engine reads (q/k/v sweeps of
    ``layers`` also read that layer's q, k and v)."""
    kinds = ("resid_pre", "v") if cfg.attn_only else ("resid_pre", "resid_mid", "v")
    names = [get_act_name(kind, layer) for layer in range(cfg.n_layers) for kind in kinds]
    if component in QKV:
        names += [get_act_name(kind, layer) for layer in layers for kind in QKV]
    return names + [key_name(cfg, layer) for layer in range(cfg.n_layers)]


@dataclass(frozen=True)
class Entry:
    """Where a patched pass starts: block ``layer`` at its attention or its MLP sublayer."""

    layer: int
    stage: str  # "attn" | "mlp"


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
        math.reserve(n_pos)
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
        row, at positions ``p0..`` only (rows = patch * batch, row ``g * batch + b``); q has
        query heads, k and v key/value heads (before the rotary embedding, as the hook points).
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
        if component in QKV:
            z = self._patched_attention(component, layer, mixed)
            return plus_base("resid_pre", self.math.attn_out(layer, z)), Entry(layer, "mlp")
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
        """Baseline keys and values of positions < p0: (batch, kv_head, p0, d_head) each."""
        k = self.base[key_name(self.cfg, layer)][:, : self.p0]
        v = self.base[get_act_name("v", layer)][:, : self.p0]
        return k.transpose(1, 2), v.transpose(1, 2)

    def _with_prefix(self, prefix: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """All keys (or values) (rows, kv_head, key_pos, d_head): the baseline prefix (batch,
        kv_head, p0, d_head), then ``new`` (rows, suffix, kv_head, d_head), written once into
        one buffer (no repeat + cat)."""
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

    def _patched_attention(self, component: str, layer: int, mixed: torch.Tensor):
        """z (rows, suffix, head, d_head) of block ``layer`` with its q, k or v patched to
        ``mixed`` (rows, suffix, heads, d_head) and the other two at their baseline values."""
        math, reps = self.math, mixed.shape[0] // self.batch
        acts = {kind: self.base[get_act_name(kind, layer)][:, self.p0 :] for kind in QKV}
        q, k, v = (mixed if kind == component else acts[kind].repeat(reps, 1, 1, 1)
                   for kind in QKV)  # (rows, suffix, heads, d_head)
        q, k = math.rotate(layer, q, self.pos), math.rotate(layer, k, self.pos)
        k_pre, v_pre = self.prefix[layer]
        return math.attend(q, self._with_prefix(k_pre, k), self._with_prefix(v_pre, v),
                           self.mask)

    def _attention(self, layer: int, x: torch.Tensor, reps: int, gather: bool) -> torch.Tensor:
        """x (rows, suffix, d_model) after block ``layer``'s attention: (rows, suffix,
        d_model), or (rows, 1, d_model) at the scored positions when ``gather`` (then only
        those positions' queries are computed)."""
        math, lw, e = self.math, self.math.layers[layer], self.math.e
        n_rows, n_new, _ = x.shape
        normed = lw.ln1(x)  # (rows, suffix, d_model)
        hq = math.h * e  # query columns of the fused projection
        if gather:
            local = self._local_score_pos(reps)  # (rows,)
            rows = torch.arange(n_rows, device=x.device)
            kv = linear_cols(normed, lw, hq, None).view(n_rows, n_new, 2 * math.g, e)
            k, v = math.rotate(layer, kv[:, :, : math.g], self.pos), kv[:, :, math.g :]
            q = linear_cols(normed[rows, local], lw, 0, hq).view(n_rows, 1, math.h, e)
            q = math.rotate(layer, q, (local + self.p0)[:, None])
            mask = self.mask[local][:, None]  # (rows, 1, key_pos)
            x = x[rows, local][:, None]  # (rows, 1, d_model)
        else:
            qkv = linear_cols(normed, lw, 0, None).view(n_rows, n_new, -1, e)
            q, k, v = math.split_qkv(qkv)
            q, k = math.rotate(layer, q, self.pos), math.rotate(layer, k, self.pos)
            mask = self.mask
        k_pre, v_pre = self.prefix[layer]
        z = math.attend(q, self._with_prefix(k_pre, k), self._with_prefix(v_pre, v), mask)
        return math.attn_out(layer, z).add_(x)


def linear_cols(x: torch.Tensor, lw, start: int, stop: int | None) -> torch.Tensor:
    """Columns ``start:stop`` of the fused q/k/v projection of x (.., d_model)."""
    return linear(x, lw.w_qkv[:, start:stop], lw.b_qkv[start:stop])


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
