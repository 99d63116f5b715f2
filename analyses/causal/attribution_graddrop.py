"""AtP*'s GradDrop: attribution patching with one layer at a time cut from the backward pass.

Kramár, Lieberum, Shah & Nanda (2024), *AtP\\*: An efficient and scalable method for
localizing LLM behaviour to components*, section 3.1.2. A component whose direct effect on
the metric is cancelled by its indirect effect through later layers gets a first-order
estimate near zero even where patching it alone matters (a brittle false negative). GradDrop
reruns the backward pass L times; pass l drops (zeroes) the gradient through layer l's
residual-stream contributions (its attention and MLP outputs), giving AtP+GD_l(n), and

    GradDrop(n) = 1 / (L - 1) * sum over l = 1..L of |AtP+GD_l(n)|

- a size score (non-negative), not a signed estimate. A cancellation that runs through one
layer shows in the passes that cut it.

Identity (what the tests check): the gradient at a node of layer l_n flows only through
layers l_n and later, so the passes that drop an earlier layer equal plain AtP, and the pass
that drops l_n itself gives 0 for the node's own attention/MLP activations (their only way
out is that layer's residual contribution). Hence for a node of the last layer,
GradDrop = (L - 1) |AtP| / (L - 1) = |AtP|. With one layer the formula divides by 0: GradDrop
needs at least two.

Implementation: one forward pass with an identity *gate* on every layer's ``hook_attn_out``
and ``hook_mlp_out`` whose backward zeroes the gradient when its layer is the dropped one
(:class:`DropState`), then L + 1 backward passes over the retained graph (the first, with
nothing dropped, is plain AtP). The recorded activations at a gate are its outputs, so for a
dropped layer their gradient is zeroed explicitly (chain rule through the gate).
TransformerLens has no backward-pass interventions of this kind; the gates attach through
:mod:`probes.hooks` like every hook.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GATES = ("hook_attn_out", "hook_mlp_out")


@dataclass
class DropState:
    """Which layer's residual contributions the next backward pass cuts (None: none)."""

    layer: int | None = None


class _Gate(torch.autograd.Function):
    """Identity forward; backward passes the gradient on unless its layer is dropped."""

    @staticmethod
    def forward(ctx, act: torch.Tensor, layer: int, state: DropState) -> torch.Tensor:
        ctx.layer, ctx.state = layer, state
        return act.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dropped = ctx.state.layer == ctx.layer
        return (torch.zeros_like(grad) if dropped else grad), None, None


def gate_names(model, layer: int) -> list[str]:
    """The hook points of ``layer``'s residual contributions that ``model`` has."""
    names = (f"blocks.{layer}.{gate}" for gate in GATES)
    return [name for name in names if name in model.hook_dict]


def gate_hooks(model, state: DropState) -> list[tuple]:
    """Replace hooks putting a gate on every layer's residual contributions."""

    def gate(layer: int):
        return lambda act: _Gate.apply(act, layer, state)

    return [(name, gate(layer)) for layer in range(model.cfg.n_layers)
            for name in gate_names(model, layer)]


def check_layers(n_layers: int) -> None:
    if n_layers < 2:
        raise ValueError(f"GradDrop needs at least 2 layers (it divides by L - 1); this model "
                         f"has {n_layers}: use plain attribution (grad_drop=False)")


def combine(abs_sum: torch.Tensor, n_layers: int) -> torch.Tensor:
    """GradDrop's score from the sum over dropped layers of |AtP+GD_l| (module doc)."""
    return abs_sum / (n_layers - 1)
