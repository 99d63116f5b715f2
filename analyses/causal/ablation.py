"""Zero, mean and resample ablation of any set of heads and sublayers.

An ablated component's activation is replaced, on every position, by

- ``zero``: 0 (a head's ``z``, so its output is just the layer's bias share: none);
- ``mean``: its mean over a reference set of prompts, per position when the reference has the
  evaluated prompts' length (templated tasks), else over rows and positions;
- ``resample``: its value on another prompt of the reference set (rows drawn with a seeded
  permutation; Chan et al. 2022's resampling ablation), which needs equal lengths.

Heads are ablated at ``hook_z`` (before W_O), attention and MLP sublayers at ``hook_attn_out``
/ ``hook_mlp_out``, with replace hooks of :func:`probes.hooks.scoped_hooks`.
:func:`mean_ablation_value` is attnlab's one mean-ablation value (head importance uses it too).

    >>> comps = [Component("head", 2, 3), Component("mlp", 1)]
    >>> logits = ablated_forward(model, tokens, comps, AblationConfig("mean"), reference=ref)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from data.notation import head_label, sublayer_label
from probes.hooks import record, scoped_hooks
from probes.models import unwrap

KINDS = ("head", "attn", "mlp")
ABLATIONS = ("zero", "mean", "resample")


@dataclass(frozen=True)
class Component:
    """One ablatable component: a head (layer, head) or a whole attention/MLP sublayer."""

    kind: str  # head | attn | mlp
    layer: int
    head: int = -1  # for kind == "head"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"component kind {self.kind!r} unknown; choose from {KINDS}")
        if (self.kind == "head") != (self.head >= 0):
            raise ValueError("give a head index for kind 'head' and only for it")

    @property
    def hook_name(self) -> str:
        if self.kind == "head":
            return f"blocks.{self.layer}.attn.hook_z"
        return f"blocks.{self.layer}.hook_{self.kind}_out"

    def label(self) -> str:
        """``L1H2`` for a head, ``attn1`` / ``mlp1`` for a sublayer (data.notation)."""
        if self.kind == "head":
            return head_label(self.layer, self.head)
        return sublayer_label(self.kind, self.layer)


def heads(pairs: Sequence[tuple[int, int]]) -> list[Component]:
    """Components for (layer, head) pairs."""
    return [Component("head", int(layer), int(head)) for layer, head in pairs]


@dataclass(frozen=True)
class AblationConfig:
    method: str = "mean"  # zero | mean | resample
    seed: int = 0  # resample: the permutation of reference rows

    def __post_init__(self) -> None:
        if self.method not in ABLATIONS:
            raise ValueError(f"ablation {self.method!r} unknown; choose from {ABLATIONS}")


def check_components(model, components: Sequence[Component]) -> None:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    for c in components:
        if not 0 <= c.layer < n_layers or c.head >= n_heads:
            raise ValueError(f"component {c.label()} is not in this model "
                             f"({n_layers} layers x {n_heads} heads)")


def mean_ablation_value(act: torch.Tensor, mask: torch.Tensor | None = None,
                        per_position: bool = True) -> torch.Tensor:
    """The mean-ablation value of an activation (batch, pos, ...), with both lead axes kept.

    (1, pos, ...): the mean over prompts at each position, when ``per_position`` and every
    token is real (``mask`` (batch, pos) bool is None or all True: templated prompts of one
    length). Otherwise (1, 1, ...): the mean over every real token (rows and positions).
    """
    if mask is not None:
        mask = mask.to(act.device)
    if per_position and (mask is None or bool(mask.all())):
        return act.mean(0, keepdim=True)
    if mask is None:
        return act.mean((0, 1), keepdim=True)
    return act[mask].mean(0)[None, None]  # (n, ...) real tokens -> (1, 1, ...)


def replacement_values(model, components, config: AblationConfig, batch: int, n_pos: int,
                       reference: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per hook name, the tensor (batch or 1, pos or 1, ...) that ablated entries take."""
    names = sorted({c.hook_name for c in components})
    if config.method == "zero":
        return {n: torch.zeros(()) for n in names}
    if reference is None:
        raise ValueError(f"{config.method} ablation needs reference prompts (reference=...)")
    with torch.no_grad():
        _, acts = record(model, names, lambda: model(reference.to(model.cfg.device)))
    if config.method == "mean":
        same_len = reference.shape[1] == n_pos
        return {n: mean_ablation_value(a, per_position=same_len) for n, a in acts.items()}
    if reference.shape[1] != n_pos:
        raise ValueError(f"resample ablation needs reference prompts of the evaluated length "
                         f"{n_pos}, got {reference.shape[1]}")
    g = torch.Generator().manual_seed(config.seed)
    rows = torch.randperm(reference.shape[0], generator=g).repeat(batch // reference.shape[0] + 1)
    return {n: a[rows[:batch].to(a.device)] for n, a in acts.items()}


def ablation_hooks(model, components, values: dict[str, torch.Tensor]):
    """``{hook name: replace hook}`` writing ``values`` into the ablated entries."""
    hooks = {}
    for name in sorted({c.hook_name for c in components}):
        mine = [c for c in components if c.hook_name == name]
        head_mask = None
        if mine[0].kind == "head":
            head_mask = torch.zeros(model.cfg.n_heads, 1, dtype=torch.bool)  # (head, 1)
            head_mask[[c.head for c in mine]] = True
        hooks[name] = _replace(values[name], head_mask)
    return hooks


def _replace(value: torch.Tensor, head_mask: torch.Tensor | None):
    def hook(act: torch.Tensor) -> torch.Tensor:
        v = value.to(act.device, act.dtype).expand_as(act) if value.ndim else value.to(act)
        if head_mask is None:
            return v.expand_as(act).clone()
        return torch.where(head_mask.to(act.device), v, act)

    return hook


def ablated_forward(model, tokens: torch.Tensor, components: Sequence[Component],
                    config: AblationConfig, reference: torch.Tensor | None = None,
                    values: dict[str, torch.Tensor] | None = None):
    """Logits (batch, pos, d_vocab) of ``tokens`` with ``components`` ablated.

    ``values``: :func:`replacement_values` already computed for these tokens' shape (for a
    superset of the components' hook points), so that many component sets ablated on one
    dataset record the reference prompts once; else they are computed from ``reference``.
    """
    model = unwrap(model)
    check_components(model, components)
    if values is None:
        values = replacement_values(model, components, config, tokens.shape[0],
                                    tokens.shape[1], reference)
    with torch.no_grad(), scoped_hooks(model, ablation_hooks(model, components, values)):
        return model(tokens.to(model.cfg.device))
