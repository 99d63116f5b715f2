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
attention softmax of the patched head is recomputed exactly instead of linearised.
``grad_drop=True`` applies AtP*'s GradDrop (:mod:`analyses.causal.attribution_graddrop`),
against cancellation between a component's direct and indirect effects: L extra backward
passes, each with one layer's residual contributions cut from the gradient, combined into
a non-negative score (the estimated *size* of the effect). Under grouped-query attention k/v
estimates are per key/value head, like the exact sweep's.

TransformerLens has no attribution patching; this module reuses its hook points only.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    grad_drop: bool = False,
) -> list[PatchingResult]:
    """Attribution estimates for several sweeps from one forward+backward per side.

    ``values`` holds the *estimated* patched metric (baseline + first-order effect), shaped like
    :func:`analyses.causal.patching.patch`'s ``values``; the table's method is
    ``attribution[_qk][_graddrop]_<method>``. ``qk_fix``: q and k sweeps use AtP*'s exact
    softmax (module doc). ``grad_drop``: the effect is AtP*'s GradDrop score, a non-negative
    size (L more backward passes; :mod:`analyses.causal.attribution_graddrop`).
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
    names = sorted(names)
    base_tokens, src_tokens = (
        (pair.corrupted, pair.clean) if method == "denoising" else (pair.clean, pair.corrupted)
    )
    drop = DropState() if grad_drop else None
    base_metric, base_acts, grads, regrad = _forward_backward(runner, base_tokens, pair.score,
                                                              names, drop)
    with torch.no_grad():
        src_out, src_acts = record(model, names, lambda: runner.full(src_tokens))
        src_metric = float(reduce_metric(pair.score(src_out)))
    clean_m, corr_m = (src_metric, base_metric) if method == "denoising" else (base_metric,
                                                                                 src_metric)
    base = Baselines(clean_m, corr_m, {}, {})

    def effects(grads_now, c):
        with torch.no_grad():
            return _effects(c, pair, model, base_acts, src_acts, grads_now,
                            qk_fix and c.component in QK)

    if grad_drop:  # sum over dropped layers of |AtP+GD_l|, then GradDrop's normalisation
        totals = [effects(regrad(0), c).abs() for c in configs]
        for layer in range(1, runner.n_layers):
            grads_l = regrad(layer)
            totals = [t + effects(grads_l, c).abs() for t, c in zip(totals, configs)]
        per_config = [combine(t, runner.n_layers) for t in totals]
    else:
        per_config = [effects(grads, c) for c in configs]
    return [_result(c, eff, runner.n_layers, pair, base, base_metric,
                    f"attribution{'_qk' if qk_fix and c.component in QK else ''}"
                    f"{'_graddrop' if grad_drop else ''}_{c.method}")
            for c, eff in zip(configs, per_config)]


def attribute(model, pair: PatchPair, config: PatchingConfig, qk_fix: bool = False,
              grad_drop: bool = False) -> PatchingResult:
    """Attribution-patching estimates for one sweep (see :func:`attribute_many`)."""
    return attribute_many(model, pair, [config], qk_fix, grad_drop)[0]


def _effects(config, pair, model, base_acts, src_acts, grads, qk_fix) -> torch.Tensor:
    """First-order effects (layer, ...) of every patch of ``config``, summed over the batch."""
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
