"""Run a circuit: the clean forward pass with every edge outside the circuit ablated.

An ablated edge u -> v carries u's **ablation output** a_u instead of what u computes in this
run: v's input becomes

    x_v  +  sum over ablated u of (a_u - o_u(this run))

where o_u(this run) is u's output in the circuit's own forward pass, so a kept edge carries
what u computes from its own (partly ablated) inputs. Two ablations (:data:`ABLATIONS`):

- ``corrupted`` (interchange ablation, MIB's and EAP-IG's ``patching`` intervention):
  a_u = o_u(corrupted prompt of the same pair). With none kept every input is the corrupted
  run's, so the output is the corrupted run's (up to float rounding; tested).
- ``mean`` (mean-positional, EAP-IG's ``evaluate_graph(intervention="mean-positional")``):
  a_u = u's output at the same position averaged over the evaluation set's **clean** prompts
  (:func:`analyses.causal.edges.means.positional_means`), the same for every prompt. With none
  kept every target input is sum over u of mean o_u + the biases (tested against that sum).

With every edge kept either is the clean run. Both are the same patching code: the ablation
outputs are (source, batch, pos, d_model) for ``corrupted`` and (source, 1, pos, d_model),
broadcast over the batch, for ``mean``. MIB and EAP-IG prune edges that no longer connect the
input to the logits first, which does not change the metric under interchange ablation (an
unconnected node computes its corrupted output), only edge counts. attnlab does not prune; under
mean ablation pruning could change the metric (a node whose every input is ablated computes
f(means), not the mean of f), so these are the unpruned circuit's numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from analyses.causal.batched import reduce_metric
from analyses.causal.edges.graph import (
    INPUT_HOOK,
    EdgeGraph,
    edge_hooks,
    head_outputs,
    source_hooks,
    target_hooks,
    target_slice,
)
from analyses.causal.patching import PatchPair
from probes.hooks import scoped_hooks
from probes.models import unwrap

ABLATIONS = ("corrupted", "mean")


def _source_recorders(model, graph: EdgeGraph, current: torch.Tensor) -> list:
    """Hooks writing this run's source outputs into ``current`` (source, batch, pos, d_model)."""
    hooks, start = [], 0
    for name in source_hooks(graph):
        if name.endswith("hook_z"):
            layer, width = int(name.split(".")[1]), graph.n_heads
        else:
            layer, width = None, 1

        def hook(act, layer=layer, lo=start, hi=start + width):
            out = act[None] if layer is None else head_outputs(model, layer, act).permute(
                2, 0, 1, 3)
            current[lo:hi] = out

        hooks.append((name, hook))
        start += width
    return hooks


def _target_patchers(graph: EdgeGraph, ablated: torch.Tensor, ablation: torch.Tensor,
                     current: torch.Tensor) -> list:
    """Hooks adding sum over ablated u of (ablation output - current) to each downstream input.

    ``ablation`` (source, batch or 1, pos, d_model) broadcasts against ``current``."""
    hooks = []
    for name in target_hooks(graph):
        sl = target_slice(graph, name)
        n_up = graph.targets[sl.start].n_up
        a = ablated[:n_up, sl].to(ablation.dtype)  # (n_up, cols)
        if not bool(a.any()):
            continue

        def hook(act, a=a, n_up=n_up):
            diff = (ablation[:n_up] - current[:n_up]).reshape(n_up, -1)
            update = (a.T @ diff).reshape(a.shape[1], *act.shape[:2], act.shape[-1])
            if act.ndim == 4:  # (batch, pos, head, d_model)
                return act + update.permute(1, 2, 0, 3)
            return act + update[0]

        hooks.append((name, hook))
    return hooks


def circuit_output(model: Any, graph: EdgeGraph, keep: torch.Tensor, clean: torch.Tensor,
                   ablation_sources: torch.Tensor) -> torch.Tensor:
    """The model output (logits) of the circuit ``keep`` (source, target) on ``clean`` tokens.

    ``ablation_sources``: what an ablated edge carries, (source, batch, pos, d_model) from
    :func:`analyses.causal.edges.sources.run_sources` on the corrupted tokens (corrupted
    ablation), or (source, 1, pos, d_model) positional means of the clean runs (mean ablation).
    """
    m = unwrap(model)
    if keep.shape != graph.real.shape:
        raise ValueError(f"keep must be (source, target) = {tuple(graph.real.shape)}, got "
                         f"{tuple(keep.shape)}")
    n_src, n_batch, n_pos, d_model = ablation_sources.shape
    if n_src != len(graph.sources) or n_pos != clean.shape[1] or n_batch not in (
            1, clean.shape[0]):
        raise ValueError(f"ablation_sources must be (source, batch or 1, pos, d_model) = "
                         f"({len(graph.sources)}, {clean.shape[0]} or 1, {clean.shape[1]}, "
                         f"d_model) for these tokens, got {tuple(ablation_sources.shape)}")
    ablated = graph.real & ~keep.bool()
    current = ablation_sources.new_zeros(n_src, clean.shape[0], n_pos, d_model)
    hooks = _source_recorders(m, graph, current)
    hooks += _target_patchers(graph, ablated, ablation_sources, current)
    assert hooks[0][0] == INPUT_HOOK
    with torch.no_grad(), edge_hooks(m), scoped_hooks(m, hooks):
        return m(clean)


def circuit_metric(model: Any, graph: EdgeGraph, keep: torch.Tensor, pair: PatchPair,
                   ablation_sources: torch.Tensor) -> float:
    """The pair's mean metric when only the edges in ``keep`` carry clean activations (the
    others carry ``ablation_sources``, as in :func:`circuit_output`)."""
    out = circuit_output(model, graph, keep, pair.clean, ablation_sources)
    return float(reduce_metric(pair.score(out)))
