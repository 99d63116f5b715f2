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
on the base prompts for all its sweeps together. ``qk_fix=True`` applies AtP*'s fix for
query and key patches (Kramár et al. 2024; :mod:`analyses.causal.attribution_qk`): the
attention softmax of the patched head is recomputed exactly instead of linearised. AtP*'s
GradDrop (L extra backward passes with one layer's gradient dropped, against cancellation) is
not implemented. Under grouped-query attention k/v estimates are per key/value head, like the
exact sweep's.

TransformerLens has no attribution patching; this module reuses its hook points only.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from analyses.causal.attribution_qk import QK, qk_effects, qk_names
from analyses.causal.batched import reduce_metric
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


def _forward_backward(runner, tokens, metric, names):
    """Metric value, activations and d metric / d activation at ``names`` on ``tokens``."""
    with torch.enable_grad():
        out, acts = record(runner.model, names, lambda: runner.full(tokens),
                           hooks={_GRAD_ENTRY: _entry_requires_grad})
        value = reduce_metric(metric(out))
        grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    grads = {n: (torch.zeros_like(acts[n]) if g is None else g) for n, g in zip(names, grads)}
    return float(value.detach()), {n: a.detach() for n, a in acts.items()}, grads


def attribute_many(
    model, pair: PatchPair, configs: Sequence[PatchingConfig], qk_fix: bool = False
) -> list[PatchingResult]:
    """Attribution estimates for several sweeps from one forward+backward per side.

    ``values`` holds the *estimated* patched metric (baseline + first-order effect), shaped like
    :func:`analyses.causal.patching.patch`'s ``values``; the table's method is
    ``attribution_<method>``. ``qk_fix``: q and k sweeps use AtP*'s exact softmax (module doc).
    """
    model = unwrap(model)
    runner = make_runner(model, pair)
    methods = {c.method for c in configs}
    if len(methods) != 1:
        raise ValueError(f"attribute_many needs one method for all configs, got {methods}")
    method = methods.pop()
    names = {hook_name(c.component, la) for c in configs for la in _layers(c, runner.n_layers)}
    if qk_fix:
        names |= set(qk_names(model.cfg, {la for c in configs if c.component in QK
                                          for la in _layers(c, runner.n_layers)}))
    names = sorted(names)
    base_tokens, src_tokens = (
        (pair.corrupted, pair.clean) if method == "denoising" else (pair.clean, pair.corrupted)
    )
    base_metric, base_acts, grads = _forward_backward(runner, base_tokens, pair.score, names)
    with torch.no_grad():
        src_out, src_acts = record(model, names, lambda: runner.full(src_tokens))
        src_metric = float(reduce_metric(pair.score(src_out)))
    clean_m, corr_m = (src_metric, base_metric) if method == "denoising" else (base_metric,
                                                                                 src_metric)
    base = Baselines(clean_m, corr_m, {}, {})
    with torch.no_grad():
        return [_estimate(c, pair, model, base, base_metric, base_acts, src_acts, grads,
                          qk_fix and c.component in QK) for c in configs]


def attribute(model, pair: PatchPair, config: PatchingConfig,
              qk_fix: bool = False) -> PatchingResult:
    """Attribution-patching estimates for one sweep (see :func:`attribute_many`)."""
    return attribute_many(model, pair, [config], qk_fix)[0]


def _estimate(config, pair, model, base, base_metric, base_acts, src_acts, grads, qk_fix):
    layers = _layers(config, model.cfg.n_layers)
    n_heads = component_heads(model.cfg, config.component)
    masks = patch_masks(config.component, config.per_position, pair.n_pos, n_heads)
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
    shape = index_shape(config.component, config.per_position, pair.n_pos, n_heads)
    effects = torch.stack(per_layer).reshape(len(layers), *shape).cpu()  # (layer, ...): TL's layout
    values = effects + base_metric
    method = f"attribution{'_qk' if qk_fix else ''}_{config.method}"
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
