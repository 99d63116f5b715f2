"""Attribution patching: the first-order estimate of every activation patch at once.

Nanda (2023), "Attribution Patching"; Syed, Rager & Conmy (2023). For a patch that moves an
activation a from its value in the patched run (a_base) to the source run's value (a_src),

    m(patched) - m(base)  ~=  sum over the patched entries of (a_src - a_base) * dm/da |_{base}

summed over the component's dims (for attention patterns: A ⊙ dm/dA). One forward pass on the
source side (its activations) and one forward + backward pass on the base side (activations
and gradients) give estimates for every component and granularity that
:mod:`analyses.causal.patching` can patch exactly, with the same masks and the same table.

Denoising: base = corrupted run, source = clean; noising: the reverse. The estimate is exact
when the metric is linear in the activation along the patch (tests: a one-layer attention-only
model without LayerNorm, where the logits are linear in z, v and the pattern).

At scale (SmolLM2: every head's z, q, k, v and every attention/MLP sublayer at once),
:func:`attribute_many` runs one forward pass on the source prompts and one forward + backward
on the base prompts for all its sweeps together, per chunk of prompt pairs (``chunk_pairs``;
memory is bounded by the chunk; a chunk is scored alone through ``PatchPair.metric_rows``).
The metric is a mean over prompts, so the full batch's effects and baselines are the
prompt-count-weighted sums of the chunks'; GradDrop sums each dropped layer's effect over
chunks before its absolute value: chunked equals unchunked.
``qk_fix=True`` applies AtP*'s fix for query and key patches (Kramár et al. 2024;
:mod:`analyses.causal.attribution_qk`): the attention softmax of the patched head is
recomputed exactly instead of linearised.
``grad_drop=True`` applies AtP*'s GradDrop (:mod:`analyses.causal.attribution_graddrop`),
against cancellation between a component's direct and indirect effects: L extra backward
passes, each with one layer's residual contributions cut from the gradient, combined into
a non-negative score (the estimated *size* of the effect). Under grouped-query attention k/v
estimates are per key/value head, like the exact sweep's.

TransformerLens has no attribution patching; this module reuses its hook points only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from analyses.causal.attribution_graddrop import (
    DropState,
    check_layers,
    combine,
    gate_hooks,
    gate_names,
)
from analyses.causal.attribution_qk import QK, qk_effects, qk_names
from analyses.causal.batched import layer_floats, logit_floats, reduce_metric
from analyses.causal.fast import component_heads
from analyses.causal.patching import (
    Baselines,
    PatchingConfig,
    PatchingResult,
    PatchPair,
    _layers,
    effects_table,
    hook_name,
    index_shape,
    make_runner,
    patch_masks,
    unwrap,
)
from probes.hooks import record

_GRAD_ENTRY = "blocks.0.hook_resid_pre"


def _entry_requires_grad(act: torch.Tensor) -> torch.Tensor | None:
    """Make the residual stream differentiable even when the weights are frozen."""
    return None if act.requires_grad else act.detach().requires_grad_(True)


def _forward_backward(runner, tokens, metric, names, drop: DropState | None = None):
    """Metric value, activations and d metric / d activation at ``names`` on ``tokens``.

    With ``drop`` (GradDrop), the forward pass carries gates and the graph is kept: the fourth
    value, ``regrad(layer)``, reruns the backward pass with ``layer``'s contributions cut.
    """
    model = runner.model
    hooks = [(_GRAD_ENTRY, _entry_requires_grad), *(gate_hooks(model, drop) if drop else ())]
    with torch.enable_grad():
        out, acts = record(model, names, lambda: runner.full(tokens), hooks=hooks)
        value = reduce_metric(metric(out))

    def grads_of(layer: int | None) -> dict[str, torch.Tensor]:
        if drop is not None:
            drop.layer = layer
        gated = set(gate_names(model, layer)) if layer is not None else set()
        with torch.enable_grad():
            grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True,
                                        retain_graph=drop is not None)
        return {n: (torch.zeros_like(acts[n]) if g is None or n in gated else g)
                for n, g in zip(names, grads)}

    grads = grads_of(None)
    return float(value.detach()), {n: a.detach() for n, a in acts.items()}, grads, grads_of


def attribute_many(
    model, pair: PatchPair, configs: Sequence[PatchingConfig], qk_fix: bool = False,
    grad_drop: bool = False, chunk_pairs: int | None = None,
) -> list[PatchingResult]:
    """Attribution estimates for several sweeps from one forward+backward per side.

    ``values`` holds the *estimated* patched metric (baseline + first-order effect), shaped like
    :func:`analyses.causal.patching.patch`'s ``values``; the table's method is
    ``attribution[_qk][_graddrop]_<method>``. ``qk_fix``: q and k sweeps use AtP*'s exact
    softmax (module doc). ``grad_drop``: the effect is AtP*'s GradDrop score, a non-negative
    size (L more backward passes; :mod:`analyses.causal.attribution_graddrop`).
    ``chunk_pairs``: run at most this many prompt pairs per forward+backward (memory is
    bounded by the chunk, not the dataset; :func:`pairs_per_chunk` sizes one to a budget).
    The result is the unchunked one (up to float rounding); the metric must then return one
    value per prompt, computed from that prompt's output row alone. None: one chunk. A chunk
    is scored by ``pair.metric_rows`` when set (``pair_from_task`` sets it); otherwise its
    output is zero-padded to the full batch for ``pair.metric``: (batch, pos, ...) without
    ``score_pos``, which the chunk does not bound.
    """
    model = unwrap(model)
    runner = make_runner(model, pair)
    methods = {c.method for c in configs}
    if len(methods) != 1:
        raise ValueError(f"attribute_many needs one method for all configs, got {methods}")
    if grad_drop:
        check_layers(runner.n_layers)
    method = methods.pop()
    names = {hook_name(c.component, la) for c in configs for la in _layers(c, runner.n_layers)}
    if qk_fix:
        names |= set(qk_names(model.cfg, {la for c in configs if c.component in QK
                                          for la in _layers(c, runner.n_layers)}))
    sweep = _Sweep(model, pair, list(configs), sorted(names), method, qk_fix, grad_drop)
    base_metric = src_metric = 0.0
    sums = None  # per backward pass (GradDrop: one per dropped layer), per config: effects
    for rows in chunk_slices(pair.batch, chunk_pairs):
        part = sweep.chunk(rows)
        base_metric, src_metric = base_metric + part[0], src_metric + part[1]
        sums = part[2] if sums is None else [[a + b for a, b in zip(s, p)]
                                             for s, p in zip(sums, part[2])]
    if grad_drop:  # |.| of each dropped layer's batch-summed effect, then GradDrop's scaling
        per_config = [combine(sum(s[i].abs() for s in sums), runner.n_layers)
                      for i in range(len(configs))]
    else:
        per_config = sums[0]
    clean_m, corr_m = (src_metric, base_metric) if method == "denoising" else (base_metric,
                                                                                 src_metric)
    base = Baselines(clean_m, corr_m, {}, {})
    return [_result(c, eff, runner.n_layers, pair, base, base_metric,
                    f"attribution{'_qk' if qk_fix and c.component in QK else ''}"
                    f"{'_graddrop' if grad_drop else ''}_{c.method}")
            for c, eff in zip(configs, per_config)]


def chunk_slices(batch: int, chunk_pairs: int | None) -> list[slice]:
    """The prompt rows of each chunk: ``chunk_pairs`` at a time (None: all in one)."""
    if chunk_pairs is None:
        return [slice(0, batch)]
    if isinstance(chunk_pairs, bool) or not isinstance(chunk_pairs, int) or chunk_pairs < 1:
        raise ValueError(f"chunk_pairs must be a positive int or None, got {chunk_pairs!r}")
    return [slice(start, min(start + chunk_pairs, batch))
            for start in range(0, batch, chunk_pairs)]


def pairs_per_chunk(model, n_pos: int, memory_budget_mb: float) -> int:
    """Prompt pairs per chunk of :func:`attribute_many` within ``memory_budget_mb`` (>= 1).

    The budget bounds the memory that grows with the chunk, estimated per pair as what the
    backward pass keeps in every layer (one layer's transient tensors,
    :func:`analyses.causal.batched.layer_floats`), plus what attribution records in every
    layer for the widest sweep (clean and corrupted activations and the gradient of z, q, k,
    v, attn_out and mlp_out), plus the logits and their gradient once. One forward+backward
    also has a fixed cost that no chunk size lowers and the budget does not count:
    TransformerLens' gated MLP and unembedding copy their weights (``.T.contiguous()``) every
    forward pass and the backward pass keeps the copies. Measured (``benchmarks/patching.py
    --chunks-only``, every head and sublayer with AtP*'s q/k fix; issue 18): SmolLM2 (Q4_1),
    IOI, 16 tokens, 53 MiB per pair estimated, 39 MiB measured over a fixed ~512 MiB
    (chunks of 1 / 2 / 4: 551 / 591 / 669 MiB); 6-layer organism, IOI, 15 tokens, 0.99 MiB
    estimated, 0.83 MiB per pair measured (32 pairs: 26.4 MiB).
    """
    model = unwrap(model)
    cfg = model.cfg
    itemsize = torch.finfo(cfg.dtype).bits // 8
    recorded = 3 * (4 * cfg.n_heads * cfg.d_head + 2 * cfg.d_model)  # acts x 2, grads
    per_pair = (cfg.n_layers * n_pos * (layer_floats(cfg, n_pos) + recorded)
                + logit_floats(model, n_pos)) * itemsize
    return max(1, int(memory_budget_mb * 2**20 // per_pair))


@dataclass(frozen=True)
class _Sweep:
    """One :func:`attribute_many` call; :meth:`chunk` runs its passes on some prompt rows."""

    model: object
    pair: PatchPair
    configs: list[PatchingConfig]
    names: list[str]
    method: str
    qk_fix: bool
    grad_drop: bool

    def chunk(self, rows: slice):
        """(base metric, source metric, effects[pass][config]) of the prompts at ``rows``,
        each a summand of the full batch's (the metric's mean over all prompts)."""
        model = self.model
        part = self.pair if rows.stop - rows.start == self.pair.batch else \
            _chunk_pair(self.pair, rows)
        runner = make_runner(model, part)
        base_tokens, src_tokens = (part.corrupted, part.clean) if self.method == "denoising" \
            else (part.clean, part.corrupted)
        drop = DropState() if self.grad_drop else None
        base_metric, base_acts, grads, regrad = _forward_backward(runner, base_tokens,
                                                                  part.score, self.names, drop)
        with torch.no_grad():
            src_out, src_acts = record(model, self.names, lambda: runner.full(src_tokens))
            src_metric = float(reduce_metric(part.score(src_out)))
        n_pos = part.n_pos

        def effects(grads_now) -> list[torch.Tensor]:
            with torch.no_grad():
                return [_effects(c, n_pos, model, base_acts, src_acts, grads_now,
                                 self.qk_fix and c.component in QK) for c in self.configs]

        passes = range(runner.n_layers) if self.grad_drop else [None]
        sums = [effects(grads if layer is None else regrad(layer)) for layer in passes]
        return base_metric, src_metric, sums


def _chunk_pair(pair: PatchPair, rows: slice) -> PatchPair:
    """The prompts at ``rows`` as a pair whose metric is their share of the full batch's mean.

    With ``pair.metric_rows`` the chunk is scored on its own output, (chunk, ...): memory is
    bounded by the chunk. Otherwise ``pair.metric`` is written for the whole batch (e.g. it
    reads each prompt's answer by row), so it gets a full-batch output whose other rows are
    zero and only ``rows``' values are kept: (batch, ...) at the scored positions with
    ``score_pos``, else (batch, pos, ...).
    """
    n_rows = rows.stop - rows.start
    if pair.metric_rows is not None:
        own, expected, keep = pair.metric_rows(rows), n_rows, slice(None)
    else:
        own, expected, keep = None, pair.batch, rows

    def metric(out: torch.Tensor) -> torch.Tensor:  # out: (chunk, ...), scored as pair.score
        if own is not None:
            values = torch.as_tensor(own(out))
        else:
            pad = out.shape[1:]
            values = torch.as_tensor(pair.metric(torch.cat([
                out.new_zeros(rows.start, *pad), out,
                out.new_zeros(pair.batch - rows.stop, *pad)])))
        if values.ndim == 0 or values.shape[0] != expected:
            raise ValueError(
                f"metric {pair.metric_name!r} returned shape {tuple(values.shape)}, not one "
                f"value per prompt ({expected},): chunked attribution needs per-prompt "
                "values to combine chunks exactly; return one value per prompt or pass "
                "chunk_pairs=None")
        return values[keep].float().sum() / pair.batch

    def part(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[rows]

    return dataclasses.replace(pair, clean=pair.clean[rows], corrupted=pair.corrupted[rows],
                               metric=metric, attention_mask=part(pair.attention_mask),
                               score_pos=part(pair.score_pos), metric_rows=None)


def attribute(model, pair: PatchPair, config: PatchingConfig, qk_fix: bool = False,
              grad_drop: bool = False, chunk_pairs: int | None = None) -> PatchingResult:
    """Attribution-patching estimates for one sweep (see :func:`attribute_many`)."""
    return attribute_many(model, pair, [config], qk_fix, grad_drop, chunk_pairs)[0]


def _effects(config, n_pos, model, base_acts, src_acts, grads, qk_fix) -> torch.Tensor:
    """First-order effects (layer, ...) of every patch of ``config``, summed over the batch
    (of ``n_pos`` positions)."""
    layers = _layers(config, model.cfg.n_layers)
    n_heads = component_heads(model.cfg, config.component)
    masks = patch_masks(config.component, config.per_position, n_pos, n_heads)
    per_layer = []
    for layer in layers:
        if qk_fix:
            per_layer.append(qk_effects(model, config.component, config.per_position, layer,
                                        base_acts, src_acts, grads).flatten())
            continue
        name = hook_name(config.component, layer)
        # (a_src - a_base) * grad, summed over the batch: (...), the activation's own axes
        contrib = ((src_acts[name] - base_acts[name]) * grads[name]).sum(0)
        masks_f = masks.to(contrib.device, contrib.dtype)  # (patch, ...) broadcastable
        per_layer.append((masks_f * contrib[None]).flatten(1).sum(1))  # (patch,)
    shape = index_shape(config.component, config.per_position, n_pos, n_heads)
    return torch.stack(per_layer).reshape(len(layers), *shape).cpu()  # (layer, ...): TL's layout


def _result(config, effects, n_layers, pair, base, base_metric, method) -> PatchingResult:
    layers = _layers(config, n_layers)
    values = effects + base_metric
    table = effects_table(values, layers, pair, config, base, method=method,
                          baseline_metric=base_metric)
    return PatchingResult(table, values, base.clean_metric, base.corrupted_metric)


def correlation(exact: pd.DataFrame, estimate: pd.DataFrame) -> float:
    """Pearson correlation of the effects of the same patches in two `patching` tables."""
    keys = ["component", "layer", "head", "position"]
    merged = exact.merge(estimate, on=keys, suffixes=("_exact", "_attr"))
    if len(merged) < 2:
        raise ValueError("the two tables share fewer than two patches: compare the same sweep")
    return float(merged["effect_exact"].corr(merged["effect_attr"]))
