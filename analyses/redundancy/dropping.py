"""Layer dropping that removes the computation: Attention / MLP / Block / Joint Layer Drop.

He et al. (2024) drop the modules with the lowest similarity score
(:mod:`analyses.redundancy.scores`): Attention Drop and MLP Drop rank one sublayer kind, Block Drop
whole blocks, Joint Layer Drop ranks attention and MLP sublayers together. One-shot ranks once
on the full model; iterative re-scores the pruned model after every drop.

:func:`prune` returns a new model object that shares the weights but whose blocks are
:class:`PrunedDecoderBlock` / :class:`PrunedEncoderBlock` (or :class:`SkippedBlock`): a dropped
sublayer and its LayerNorm are not children of the pruned block and are never called, so the
residual passes through untouched and the saved time is real. (TransformerLens can zero a
sublayer's output with a hook, but that still computes it; it has no way to skip one.) Hook
names are unchanged, so every TransformerLens hook name still resolves on the pruned model.

Supported: standard pre-LN HookedTransformer blocks (sequential attn -> MLP, optionally
attention-only) and TransformerLens' post-LN BertBlock; other layouts raise ValueError.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from probes.models import LoadedModel

STRATEGIES = ("attn", "mlp", "block", "joint")


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

    def is_dropped(self, layer: int, module: str) -> bool:
        if module == "block":
            return layer in self.attn and layer in self.mlp
        return layer in getattr(self, _check_module(module))

    def add(self, layer: int, module: str) -> DropSet:
        """A new DropSet with ``module`` ("attn" | "mlp" | "block") of ``layer`` dropped too."""
        if module == "block":
            return DropSet(self.attn | {layer}, self.mlp | {layer})
        _check_module(module)
        return dataclasses.replace(self, **{module: getattr(self, module) | {layer}})

    def check(self, n_layers: int) -> None:
        bad = sorted(i for i in self.attn | self.mlp if i >= n_layers)
        if bad:
            raise ValueError(f"cannot drop layer(s) {bad}: the model has {n_layers} layers")

    @property
    def empty(self) -> bool:
        return not self.attn and not self.mlp


def _check_module(module: str) -> str:
    if module not in ("attn", "mlp"):
        raise ValueError(f"unknown module {module!r}: use 'attn', 'mlp' or 'block'")
    return module


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    return strategy


# ----------------------------------------------------------------------------- pruned blocks


class SkippedBlock(nn.Module):
    """A fully dropped block: the residual passes through, nothing is computed."""

    def forward(self, resid_pre: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return resid_pre


def _adopt(target: nn.Module, block: nn.Module, skip: set[str]) -> None:
    """Give ``target`` the children of ``block`` except ``skip`` (same names, shared weights)."""
    for name, child in block.named_children():
        if name not in skip:
            target.add_module(name, child)


class PrunedDecoderBlock(nn.Module):
    """TransformerLens' pre-LN ``TransformerBlock.forward`` with sublayers optionally skipped.

    Same operations in the same order as TransformerLens for the standard layout, so with
    nothing dropped the output is bit-identical (tested); a dropped attention skips ln1 + attn,
    a dropped MLP skips ln2 + mlp.
    """

    def __init__(self, block: nn.Module, keep_attn: bool, keep_mlp: bool) -> None:
        super().__init__()
        self.cfg = block.cfg
        self.keep_attn, self.keep_mlp = keep_attn, keep_mlp and not block.cfg.attn_only
        skip = (set() if keep_attn else {"attn", "ln1"}) | (
            set() if self.keep_mlp else {"mlp", "ln2"})
        _adopt(self, block, skip)

    def forward(self, resid_pre, shortformer_pos_embed=None, past_kv_cache_entry=None,
                attention_mask=None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid_pre)  # (batch, pos, d_model)
        if self.keep_attn:
            x = self.ln1(resid)
            attn_out = self.attn(query_input=x, key_input=x, value_input=x,
                                 past_kv_cache_entry=past_kv_cache_entry,
                                 attention_mask=attention_mask)
            resid = resid + self.hook_attn_out(attn_out)
        if self.cfg.attn_only:
            return self.hook_resid_post(resid)
        resid = self.hook_resid_mid(resid)
        if self.keep_mlp:
            mlp_in = self.hook_mlp_in(resid.clone()) if self.cfg.use_hook_mlp_in else resid
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(mlp_in)))
        return self.hook_resid_post(resid)


class PrunedEncoderBlock(nn.Module):
    """TransformerLens' post-LN ``BertBlock.forward`` with sublayer units optionally skipped.

    BERT's units are ``r -> ln1(r + attn(r))`` and ``h -> ln2(h + mlp(h))``: a dropped
    attention skips attn + ln1, a dropped MLP skips mlp + ln2 (see analyses.redundancy.scores).
    """

    def __init__(self, block: nn.Module, keep_attn: bool, keep_mlp: bool) -> None:
        super().__init__()
        self.cfg = block.cfg
        self.keep_attn, self.keep_mlp = keep_attn, keep_mlp
        skip = (set() if keep_attn else {"attn", "ln1"}) | (set() if keep_mlp else {"mlp", "ln2"})
        _adopt(self, block, skip)

    def forward(self, resid_pre, additive_attention_mask=None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid_pre)  # (batch, pos, d_model)
        if self.keep_attn:
            attn_out = self.hook_attn_out(self.attn(
                resid, resid, resid, additive_attention_mask=additive_attention_mask))
            resid_mid = self.hook_resid_mid(resid + attn_out)
            mlp_in = self.hook_mlp_in(resid_mid.clone()) if self.cfg.use_hook_mlp_in else resid_mid
            resid = self.ln1(mlp_in)
        if self.keep_mlp:
            mlp_out = self.hook_mlp_out(self.mlp(resid))
            resid_post = self.hook_resid_post(resid + mlp_out)
            resid = self.hook_normalized_resid_post(self.ln2(resid_post))
        return resid


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
    if any(isinstance(b, PrunedDecoderBlock | PrunedEncoderBlock | SkippedBlock)
           for b in loaded.model.blocks):
        raise ValueError("model is already pruned: prune the original model with the full DropSet")


def prune(loaded: LoadedModel, drops: DropSet) -> LoadedModel:
    """A model that shares ``loaded``'s weights with the sublayers in ``drops`` removed.

    The original model is not modified. Every block is replaced (so dropping nothing runs the
    pruned forward and must reproduce the model exactly); a block with both sublayers dropped
    becomes a :class:`SkippedBlock`.
    """
    _check_supported(loaded)
    drops.check(loaded.cfg.n_layers)
    model = loaded.model
    pruned = copy.copy(model)  # shares cfg, weights, hook_dict/mod_dict (the same HookPoints)
    pruned._modules = dict(model._modules)  # own child table: replacing blocks leaves model be
    cls = PrunedEncoderBlock if loaded.kind == "encoder" else PrunedDecoderBlock
    blocks = []
    for layer, block in enumerate(model.blocks):
        keep_attn, keep_mlp = layer not in drops.attn, layer not in drops.mlp
        if cfg_attn_only(loaded) and not keep_attn:
            keep_mlp = False
        if not keep_attn and not keep_mlp:
            blocks.append(SkippedBlock())
        else:
            blocks.append(cls(block, keep_attn, keep_mlp))
    pruned.blocks = nn.ModuleList(blocks)
    return dataclasses.replace(loaded, model=pruned)


def cfg_attn_only(loaded: LoadedModel) -> bool:
    return bool(getattr(loaded.cfg, "attn_only", False))


# ----------------------------------------------------------------------------- strategies


class DropStep(NamedTuple):
    """One drop of a plan: the ``step``-th module removed, its score when chosen (NaN: random)."""

    step: int
    layer: int
    module: str  # attn | mlp | block
    score: float


@dataclass(frozen=True)
class DropPlan:
    """An ordered list of drops for one strategy and mode (one_shot | iterative | random)."""

    strategy: str
    mode: str
    steps: tuple[DropStep, ...]

    def drop_sets(self) -> list[DropSet]:
        """The cumulative DropSet after 0, 1, ..., len(steps) drops."""
        out = [DropSet()]
        for s in self.steps:
            out.append(out[-1].add(s.layer, s.module))
        return out


def candidates(cfg, strategy: str, drops: DropSet | None = None) -> list:
    """The modules ``strategy`` may still drop, as ``ModuleRef``s (already-dropped excluded)."""
    from analyses.redundancy.scores import ModuleRef

    kinds = {"attn": ("attn",), "mlp": ("mlp",), "block": ("block",),
             "joint": ("attn", "mlp")}[check_strategy(strategy)]
    has_mlp = not getattr(cfg, "attn_only", False)
    drops = drops or DropSet()
    return [ModuleRef(layer, k) for layer in range(cfg.n_layers) for k in kinds
            if (k != "mlp" or has_mlp) and not drops.is_dropped(layer, k)]


def check_max_drop(cfg, strategy: str, max_drop: int) -> int:
    """``max_drop`` if ``strategy`` can drop that many modules of this model, else ValueError."""
    n = len(candidates(cfg, strategy))
    if not isinstance(max_drop, int) or max_drop < 0:
        raise ValueError(f"max_drop must be a non-negative integer, got {max_drop!r}")
    if max_drop > n:
        raise ValueError(
            f"strategy {strategy!r} can drop at most {n} modules of this {cfg.n_layers}-layer "
            f"model, but max_drop={max_drop} was asked: pass --max-drop {n} or less")
    return max_drop


def one_shot_plan(scores, strategy: str, max_drop: int) -> DropPlan:
    """Rank once: the ``max_drop`` lowest-scoring candidates of the full model's ``scores``."""
    check_strategy(strategy)
    kinds = ["attn", "mlp"] if strategy == "joint" else [strategy]
    pool = scores[scores["module"].isin(kinds)].sort_values(["score", "layer"])
    if max_drop > len(pool):
        raise ValueError(f"strategy {strategy!r} has only {len(pool)} scored modules, "
                         f"max_drop={max_drop} asked")
    steps = tuple(DropStep(i + 1, int(r.layer), str(r.module), float(r.score))
                  for i, r in enumerate(pool.head(max_drop).itertuples()))
    return DropPlan(strategy, "one_shot", steps)


def iterative_plan(loaded: LoadedModel, tokens, strategy: str, max_drop: int,
                   score_config=None) -> DropPlan:
    """Drop the lowest-scoring candidate, re-score the pruned model, repeat (He et al.)."""
    from analyses.redundancy.scores import similarity_scores

    check_max_drop(loaded.cfg, check_strategy(strategy), max_drop)
    drops, steps = DropSet(), []
    for step in range(1, max_drop + 1):
        pool = candidates(loaded.cfg, strategy, drops)
        scores = similarity_scores(prune(loaded, drops), tokens, pool, drops, score_config)
        best = scores.sort_values(["score", "layer"]).iloc[0]
        steps.append(DropStep(step, int(best.layer), str(best.module), float(best.score)))
        drops = drops.add(int(best.layer), str(best.module))
    return DropPlan(strategy, "iterative", tuple(steps))


def random_plan(cfg, strategy: str, max_drop: int, seed: int = 0) -> DropPlan:
    """The random-drop baseline: ``max_drop`` candidates in a seeded random order."""
    check_max_drop(cfg, check_strategy(strategy), max_drop)
    pool = candidates(cfg, strategy)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
    steps = tuple(DropStep(i + 1, pool[j].layer, pool[j].module, float("nan"))
                  for i, j in enumerate(order[:max_drop]))
    return DropPlan(strategy, f"random_{seed}", steps)
