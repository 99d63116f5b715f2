"""Run a circuit: the clean forward pass with every edge outside the circuit ablated.

An ablated edge u -> v carries u's output from the **corrupted** run (interchange ablation,
MIB's and EAP-IG's ``patching`` intervention; no mean ablation here): v's input becomes

    x_v  +  sum over ablated u of (o_u(corrupted) - o_u(this run))

where o_u(this run) is u's output in the circuit's own forward pass, so a kept edge carries
what u computes from its own (partly ablated) inputs. With every edge kept this is the clean
run; with none kept every input is the corrupted run's, so the output is the corrupted run's
(up to float rounding; tested). EAP-IG's ``evaluate_graph`` computes the same; MIB prunes
edges that no longer connect the input to the logits first, which does not change the metric
under this ablation (an unconnected node computes its corrupted output), only edge counts.
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


def _target_patchers(graph: EdgeGraph, ablated: torch.Tensor, corrupted: torch.Tensor,
                     current: torch.Tensor) -> list:
    """Hooks adding sum over ablated u of (corrupted - current) to each downstream input."""
    hooks = []
    for name in target_hooks(graph):
        sl = target_slice(graph, name)
        n_up = graph.targets[sl.start].n_up
        a = ablated[:n_up, sl].to(corrupted.dtype)  # (n_up, cols)
        if not bool(a.any()):
            continue

        def hook(act, a=a, n_up=n_up):
            diff = (corrupted[:n_up] - current[:n_up]).reshape(n_up, -1)
            update = (a.T @ diff).reshape(a.shape[1], *act.shape[:2], act.shape[-1])
            if act.ndim == 4:  # (batch, pos, head, d_model)
                return act + update.permute(1, 2, 0, 3)
            return act + update[0]

        hooks.append((name, hook))
    return hooks


def circuit_output(model: Any, graph: EdgeGraph, keep: torch.Tensor, clean: torch.Tensor,
                   corrupted_sources: torch.Tensor) -> torch.Tensor:
    """The model output (logits) of the circuit ``keep`` (source, target) on ``clean`` tokens.

    ``corrupted_sources``: (source, batch, pos, d_model) from
    :func:`analyses.causal.edges.sources.run_sources` on the corrupted tokens.
    """
    m = unwrap(model)
    if keep.shape != graph.real.shape:
        raise ValueError(f"keep must be (source, target) = {tuple(graph.real.shape)}, got "
                         f"{tuple(keep.shape)}")
    ablated = graph.real & ~keep.bool()
    current = torch.zeros_like(corrupted_sources)
    hooks = _source_recorders(m, graph, current)
    hooks += _target_patchers(graph, ablated, corrupted_sources, current)
    assert hooks[0][0] == INPUT_HOOK
    with torch.no_grad(), edge_hooks(m), scoped_hooks(m, hooks):
        return m(clean)


def circuit_metric(model: Any, graph: EdgeGraph, keep: torch.Tensor, pair: PatchPair,
                   corrupted_sources: torch.Tensor) -> float:
    """The pair's mean metric when only the edges in ``keep`` carry clean activations."""
    out = circuit_output(model, graph, keep, pair.clean, corrupted_sources)
    return float(reduce_metric(pair.score(out)))
