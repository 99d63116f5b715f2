"""Layer dropping that removes the computation: :func:`prune` a model by a :class:`DropSet`.

Which components to drop, and in which order (He et al.'s Attention / MLP / Block / Joint
Layer Drop, one-shot or iterative), is :mod:`analyses.redundancy.plans`; this module is the
mechanism only.

:func:`prune` returns a new model object that shares the weights and runs TransformerLens' own
block forward with the dropped parts swapped out of the blocks: a dropped sublayer (in a pre-LN
block with its LayerNorm, which feeds only it) becomes a :class:`DroppedSublayer`, which
computes nothing and adds a 0-d zero; the LayerNorm of a dropped post-LN BERT unit becomes the
identity; the dropped sublayer's hook points become silent identities; a fully dropped block
becomes a :class:`SkippedBlock`. The dropped weights are not part of the pruned model and never
run, so the saved time is real (TransformerLens can zero a sublayer's output with a hook, but
that still computes it; it has no way to skip one). Hook names are unchanged: the pruned model
shares the original's hook points, so every TransformerLens hook name still resolves (a
dropped sublayer's hooks resolve and never fire).

Why no hand-written block forward: an earlier version re-implemented TransformerLens'
``TransformerBlock`` and ``BertBlock`` forwards with sublayers skipped; swapping children keeps
one forward (TransformerLens') for full and pruned models alike, for every normalisation and
MLP kind TransformerLens has.

Supported: standard pre-LN HookedTransformer blocks (sequential attn -> MLP, optionally
attention-only) and TransformerLens' post-LN BertBlock; other layouts raise ValueError.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from probes.models import LoadedModel


@dataclass(frozen=True)
class DropSet:
    """Which sublayers are dropped: layer indices of dropped attention and MLP sublayers."""

    attn: frozenset[int] = field(default_factory=frozenset)
    mlp: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("attn", "mlp"):
            value = frozenset(int(i) for i in getattr(self, name))
            if any(i < 0 for i in value):
                raise ValueError(f"DropSet.{name} has a negative layer index: {sorted(value)}")
            object.__setattr__(self, name, value)

    def is_dropped(self, layer: int, component: str) -> bool:
        if component == "block":
            return layer in self.attn and layer in self.mlp
        return layer in getattr(self, _check_component(component))

    def add(self, layer: int, component: str) -> DropSet:
        """A new DropSet with ``component`` ("attn" | "mlp" | "block") of ``layer`` dropped too."""
        if component == "block":
            return DropSet(self.attn | {layer}, self.mlp | {layer})
        _check_component(component)
        return dataclasses.replace(self, **{component: getattr(self, component) | {layer}})

    def check(self, n_layers: int) -> None:
        bad = sorted(i for i in self.attn | self.mlp if i >= n_layers)
        if bad:
            raise ValueError(f"cannot drop layer(s) {bad}: the model has {n_layers} layers")

    @property
    def empty(self) -> bool:
        return not self.attn and not self.mlp


def _check_component(component: str) -> str:
    if component not in ("attn", "mlp"):
        raise ValueError(f"unknown component {component!r}: use 'attn', 'mlp' or 'block'")
    return component


# ----------------------------------------------------------------------------- pruned blocks


class SkippedBlock(nn.Module):
    """A fully dropped block: the residual passes through, nothing is computed."""

    def forward(self, resid_pre: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return resid_pre


class DroppedSublayer(nn.Module):
    """A dropped attention or MLP sublayer (or its pre-LN LayerNorm) inside TransformerLens'
    own block: it computes nothing and returns a 0-d zero, which the block's residual sum
    ``resid + out`` broadcasts, so TransformerLens' block forward runs unchanged around it."""

    def forward(self, *inputs, **kw_inputs) -> torch.Tensor:
        first = next(t for t in (*inputs, *kw_inputs.values()) if isinstance(t, torch.Tensor))
        return first.new_zeros(())


# What takes the place of a block's children when one of its sublayers is dropped, so that
# TransformerLens' own block forward skips the sublayer's work and fires none of its hooks:
# DroppedSublayer where the child only feeds (or is) the dropped sublayer; nn.Identity for a
# hook point the kept model must not fire, and for a post-LN LayerNorm that becomes the
# identity (docs/METHODS.md §3, "Which X and Y": a dropped BERT unit is r -> r). Pre-LN
# (TransformerBlock): resid_mid = resid_pre + attn(ln1(resid_pre)); post-LN (BertBlock): see
# the module docstring of analyses.redundancy.scores.
_SWAPS: dict[tuple[str, str], dict[str, type[nn.Module]]] = {
    ("decoder", "attn"): {"ln1": DroppedSublayer, "attn": DroppedSublayer,
                          "hook_attn_out": nn.Identity},
    ("decoder", "mlp"): {"ln2": DroppedSublayer, "mlp": DroppedSublayer,
                         "hook_mlp_in": nn.Identity, "hook_mlp_out": nn.Identity},
    ("encoder", "attn"): {"attn": DroppedSublayer, "hook_attn_out": nn.Identity,
                          "hook_resid_mid": nn.Identity, "hook_mlp_in": nn.Identity,
                          "ln1": nn.Identity},
    ("encoder", "mlp"): {"mlp": DroppedSublayer, "hook_mlp_out": nn.Identity,
                         "hook_resid_post": nn.Identity, "ln2": nn.Identity,
                         "hook_normalized_resid_post": nn.Identity},
}


def _shallow_copy(mod: nn.Module, **children: nn.Module) -> nn.Module:
    """``mod`` sharing its weights, config and hook points, with its own child table in
    which ``children`` replace the children of those names (``mod`` is left as it is)."""
    out = copy.copy(mod)
    out._modules = {**mod._modules, **children}
    return out


def pruned_block(block: nn.Module, kind: str, keep_attn: bool, keep_mlp: bool) -> nn.Module:
    """``block`` itself when nothing of it is dropped, a :class:`SkippedBlock` when both
    sublayers are, else a copy of it (``kind`` decoder | encoder) with the dropped sublayer's
    children swapped as ``_SWAPS`` says."""
    if keep_attn and keep_mlp:
        return block
    if not keep_attn and not keep_mlp:
        return SkippedBlock()
    swaps = _SWAPS[kind, "mlp" if keep_attn else "attn"]
    return _shallow_copy(block, **{name: swap() for name, swap in swaps.items()})


# ----------------------------------------------------------------------------- prune


def _check_supported(loaded: LoadedModel) -> None:
    cfg = loaded.cfg
    problems = [flag for flag in ("use_attn_in", "use_split_qkv_input", "parallel_attn_mlp",
                                  "use_normalization_before_and_after")
                if getattr(cfg, flag, False)]
    if loaded.kind == "decoder":
        from transformer_lens.components.transformer_block import POST_NORM_ARCHITECTURES

        if cfg.original_architecture in POST_NORM_ARCHITECTURES:
            problems.append(f"post-norm architecture {cfg.original_architecture}")
        if cfg.positional_embedding_type == "shortformer":
            problems.append("shortformer positional embeddings")
    if problems:
        raise ValueError(
            f"model {loaded.name!r}: layer dropping supports sequential pre-LN blocks and BERT "
            f"blocks only, this model uses {problems}; turn those options off")
    if getattr(loaded.model, "drop_set", None) is not None:
        raise ValueError("model is already pruned: prune the original model with the full DropSet")


def prune(loaded: LoadedModel, drops: DropSet) -> LoadedModel:
    """A model that shares ``loaded``'s weights with the sublayers in ``drops`` removed.

    The original model is not modified. Blocks with nothing dropped are the original blocks;
    the pruned model records ``drops`` as its ``drop_set``.
    """
    _check_supported(loaded)
    drops.check(loaded.cfg.n_layers)
    attn_only = bool(getattr(loaded.cfg, "attn_only", False))
    blocks = []
    for layer, block in enumerate(loaded.model.blocks):
        keep_attn = layer not in drops.attn
        keep_mlp = keep_attn if attn_only else layer not in drops.mlp  # no MLP to keep or drop
        blocks.append(pruned_block(block, loaded.kind, keep_attn, keep_mlp))
    # shares cfg, weights and hook_dict/mod_dict (the same HookPoints), so every hook name
    # still resolves; a dropped sublayer's hook points are in no block and never fire
    pruned = _shallow_copy(loaded.model, blocks=nn.ModuleList(blocks))
    pruned.drop_set = drops
    return dataclasses.replace(loaded, model=pruned)
