"""Similarity-based importance of attention, MLP and whole blocks (He et al. 2024).

He et al., "What Matters in Transformers? Not All Attention is Needed" (2024), score a component
with input X and output Y (the output *includes* the residual) by
``S = 1 - mean_t cos(X_t, Y_t)`` over calibration tokens; a low S means the component barely
changes the hidden state and is a candidate for dropping (:mod:`analyses.redundancy.dropping`).

Where X and Y sit (the "droppable unit" definition)
---------------------------------------------------
A score must measure exactly the map that dropping replaces by the identity.

- Pre-LN decoders (HookedTransformer, e.g. the organism): the attention unit is
  ``X -> X + attn(ln1(X))``, so X = ``hook_resid_pre``, Y = ``hook_resid_mid``; the MLP unit
  maps ``hook_resid_mid -> hook_resid_post``; the block maps ``resid_pre -> resid_post``.
  This is He et al.'s definition verbatim.
- Post-LN BERT (HookedEncoder, MiniLM): the block is ``r -> ln2(h + mlp(h))`` with
  ``h = ln1(r + attn(r))`` (transformer_lens/components/bert_block.py). The LayerNorm sits
  *after* the residual sum, so the attention unit is ``r -> ln1(r + attn(r))`` (X =
  ``hook_resid_pre``, Y = ln1's output) and the MLP unit is ``h -> ln2(h + mlp(h))`` (Y =
  ``hook_normalized_resid_post``, the block output). Dropping a unit removes the sublayer
  *and its LayerNorm* (docs/METHODS.md §3, "Which X and Y"), so this Y -- not He et al.'s
  pre-LN sum ``r + attn(r)`` -- is what the next component would see change. The pre-LN sum
  variant is available as ``definition="residual_sum"`` for comparison (BERT only; identical
  for pre-LN models); note MiniLM's pre-LN sums carry a massive dimension (~200) that
  dominates their cosine.

TransformerLens' LayerNorm hook ``hook_normalized`` precedes the affine ``w, b``; the
accumulator port applies ``x * w + b`` to recover the component output (a pure function).

Scores are streamed: one :class:`CosineAccumulator` per component receives X and Y from two hooks
(its ``input`` / ``output`` ports follow the probes' ``update(tensor, mask)`` protocol), keeps
a float64 running sum of per-token fp32 cosines over non-padding tokens, and nothing else --
memory does not grow with the calibration set. Under torchrun each rank streams its block of
the prompts and the sums and counts are added over ranks (exact up to float rounding).

    >>> scores = similarity_scores(load_model("minilm"), tokenize(lm, sentences))
    >>> scores.columns  # layer, component, score, mean_cos, n_tokens
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

import pandas as pd
import torch

from probes.capture import capture
from probes.distributed import merge_accumulators, shard_tokens
from probes.models import is_encoder
from probes.tokens import Tokens, batches

if TYPE_CHECKING:
    from analyses.redundancy.dropping import DropSet
    from probes.models import LoadedModel

ModuleKind = Literal["attn", "mlp", "block"]
COMPONENT_KINDS: tuple[str, ...] = ("attn", "mlp", "block")
DEFINITIONS = ("unit", "residual_sum")


class ComponentRef(NamedTuple):
    """One droppable component: ``layer`` index and ``component`` in attn | mlp | block."""

    layer: int
    component: str


class HookRef(NamedTuple):
    """A hook point, and an optional LayerNorm affine ``(w, b)`` to apply to its tensor."""

    name: str
    affine: tuple[torch.Tensor, torch.Tensor] | None = None


class ComponentIO(NamedTuple):
    """Where a component's input X and output Y are read."""

    x: HookRef
    y: HookRef


@dataclass(frozen=True)
class ScoreConfig:
    """How similarity scores are computed."""

    batch_size: int = 16  # prompts per forward pass
    definition: str = "unit"  # "unit" (what dropping removes) | "residual_sum" (BERT pre-LN sum)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.definition not in DEFINITIONS:
            raise ValueError(f"definition must be one of {DEFINITIONS}, got {self.definition!r}")


# ----------------------------------------------------------------------------- accumulator


def masked_cosines(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """fp32 cos(x_t, y_t) of every non-padding token: (batch, pos, d) x2 -> (n_tokens,)."""
    cos = torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)  # (batch, pos)
    return cos.flatten() if mask is None else cos[mask.to(cos.device).bool()]


def _apply_affine(t: torch.Tensor, affine) -> torch.Tensor:
    if affine is None:
        return t
    w, b = affine
    return t.float() * w.float() + b.float()


class _Port:
    """One input of a :class:`CosineAccumulator`; follows the ``update(tensor, mask)`` protocol."""

    def __init__(self, owner: CosineAccumulator, side: str, affine=None) -> None:
        self.owner, self.side, self.affine = owner, side, affine

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx) -> None:
        self.owner._receive(self.side, _apply_affine(tensor.detach(), self.affine), mask)

    def result(self) -> pd.DataFrame:
        return self.owner.result()


class CosineAccumulator:
    """Streaming mean of cos(X_t, Y_t) over non-padding tokens for one component.

    Register ``acc.input`` on X's hook and ``acc.output`` on Y's hook; X fires first in every
    forward pass and is held only until Y arrives. ``result()`` is a one-row table.
    """

    def __init__(self, ref: ComponentRef, io: ComponentIO) -> None:
        self.ref = ref
        self.input = _Port(self, "x", io.x.affine)
        self.output = _Port(self, "y", io.y.affine)
        self._pending: torch.Tensor | None = None
        self._sum = 0.0  # float64 running sum of cosines
        self._count = 0

    def _receive(self, side: str, tensor: torch.Tensor, mask: torch.Tensor) -> None:
        if side == "x":
            self._pending = tensor
            return
        if self._pending is None:
            raise RuntimeError(f"{self.ref}: output arrived before input; check the hook order")
        self.update_pair(self._pending, tensor, mask)
        self._pending = None

    def update_pair(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        cos = masked_cosines(x, y, mask)  # (n_tokens,)
        self._sum += float(cos.double().sum())
        self._count += int(cos.numel())

    def result(self) -> pd.DataFrame:
        if self._count == 0:
            raise ValueError(f"no tokens reached {self.ref}: was the component dropped?")
        mean_cos = self._sum / self._count
        return pd.DataFrame([{
            "layer": self.ref.layer, "component": self.ref.component, "score": 1.0 - mean_cos,
            "mean_cos": mean_cos, "n_tokens": self._count,
        }])


# ----------------------------------------------------------------------------- hook locations


def _ln_affine(ln) -> tuple[torch.Tensor, torch.Tensor]:
    return ln.w.detach(), ln.b.detach()


def component_io(model, ref: ComponentRef, drops: DropSet | None = None,
              definition: str = "unit") -> ComponentIO:
    """Hook locations of ``ref``'s X and Y in ``model`` with ``drops`` already removed."""
    layer, component = ref
    attn_gone = drops is not None and layer in drops.attn
    mlp_gone = drops is not None and layer in drops.mlp
    pre = HookRef(f"blocks.{layer}.hook_resid_pre")
    if is_encoder(model):
        block = model.blocks[layer]
        if definition == "residual_sum":
            mid = HookRef(f"blocks.{layer}.hook_resid_mid")
            if component == "mlp":  # the MLP's residual sum reads ln1's output
                pre = HookRef(f"blocks.{layer}.ln1.hook_normalized", _ln_affine(block.ln1))
            post = HookRef(f"blocks.{layer}.hook_resid_post")
            return ComponentIO(pre, mid if component == "attn" else post)
        mid = pre if attn_gone else HookRef(f"blocks.{layer}.ln1.hook_normalized",
                                            _ln_affine(block.ln1))
        post = mid if mlp_gone else HookRef(f"blocks.{layer}.hook_normalized_resid_post")
    else:
        mid = HookRef(f"blocks.{layer}.hook_resid_post" if model.cfg.attn_only
                      else f"blocks.{layer}.hook_resid_mid")
        post = HookRef(f"blocks.{layer}.hook_resid_post")
    return {"attn": ComponentIO(pre, mid), "mlp": ComponentIO(mid, post),
            "block": ComponentIO(pre, post)}[component]


def all_components(cfg, kinds: Sequence[str] = COMPONENT_KINDS) -> list[ComponentRef]:
    """Every (layer, component) of a model config; attention-only models have no MLP."""
    bad = [k for k in kinds if k not in COMPONENT_KINDS]
    if bad:
        raise ValueError(f"unknown component(s) {bad}: use {COMPONENT_KINDS}")
    has_mlp = not getattr(cfg, "attn_only", False)
    return [ComponentRef(layer, k) for layer in range(cfg.n_layers) for k in kinds
            if k != "mlp" or has_mlp]


# ----------------------------------------------------------------------------- scoring


def stream_scores(loaded: LoadedModel, tokens: Tokens, accs: Sequence[CosineAccumulator],
                  ios: Sequence[ComponentIO], batch_size: int) -> None:
    """Feed ``accs`` through the probes' scoped capture, one forward per batch (no cache)."""
    ports: dict[str, list] = {}
    for acc, io in zip(accs, ios, strict=True):
        ports.setdefault(io.x.name, []).append(acc.input)
        ports.setdefault(io.y.name, []).append(acc.output)
    with capture(loaded, ports) as cap, torch.no_grad():
        for batch in batches(tokens, batch_size):
            cap.forward(batch)


def similarity_scores(
    loaded: LoadedModel, tokens: Tokens, components: Sequence[ComponentRef] | None = None,
    drops: DropSet | None = None, config: ScoreConfig | None = None,
) -> pd.DataFrame:
    """He et al.'s importance ``1 - mean cos(X, Y)`` of each component, as a tidy table.

    ``loaded`` may be a pruned model (:func:`analyses.redundancy.dropping.prune`) with ``drops``
    its drop
    set; dropped components cannot be scored. Columns: layer, component, score, mean_cos, n_tokens.
    """
    config = config or ScoreConfig()
    components = list(components) if components is not None else all_components(loaded.cfg)
    if drops is not None:
        gone = [m for m in components if drops.is_dropped(m.layer, m.component)]
        if gone:
            raise ValueError(f"cannot score dropped components {gone}")
    ios = [component_io(loaded.model, m, drops, config.definition) for m in components]
    accs = [CosineAccumulator(m, io) for m, io in zip(components, ios, strict=True)]
    # under torchrun: this rank's prompts, then the sums and counts of every rank's
    stream_scores(loaded, shard_tokens(tokens), accs, ios, config.batch_size)
    merge_accumulators(accs)
    out = pd.concat([a.result() for a in accs], ignore_index=True)
    return out.sort_values(["layer", "component"], ignore_index=True)


# ----------------------------------------------------------------------------- He et al. check


@dataclass(frozen=True)
class HeComparison:
    """Does a model show He et al.'s ordering (attention far more redundant than MLP)?"""

    attn_scores: list[float]  # per layer, unit definition
    mlp_scores: list[float]  # per layer
    mean_attn: float
    mean_mlp: float
    layers_attn_below_mlp: list[int]  # layers whose attention scores lower than their MLP
    attn_layers_by_score: list[int]  # attention layers, most redundant first
    lowest_attn_in_deeper_half: bool  # the most redundant attention layer is a deep one
    same_ordering: bool  # mean_attn < mean_mlp, in most layers, and deep attention lowest
    verdict: str  # one sentence with the figures
    # "especially deep ones", beyond the single lowest layer (robust to near-ties and to
    # outlier layers such as a first layer that rewrites the embedding):
    median_attn_shallow: float = float("nan")  # median attention score, layers < n/2
    median_attn_deep: float = float("nan")  # median attention score, layers >= n/2
    n_lowest: int = 0  # k = ceil(n/4): how many most-redundant attention layers are counted
    deep_among_lowest: int = 0  # of the k most redundant attention layers, how many are deep


def he_comparison(scores: pd.DataFrame) -> HeComparison:
    """Compare a ``redundancy`` table (one definition) with He et al.'s reported ordering."""
    wide = scores.pivot_table(index="layer", columns="component", values="score").sort_index()
    if "mlp" not in wide:
        raise ValueError("the model has no MLP sublayers: attention vs MLP cannot be compared")
    attn, mlp = wide["attn"], wide["mlp"]
    below = [int(i) for i in wide.index if attn[i] < mlp[i]]
    by_score = [int(i) for i in attn.sort_values().index]
    n = len(wide)
    deep = by_score[0] >= n / 2
    same = attn.mean() < mlp.mean() and len(below) > n / 2 and deep
    is_deep = wide.index >= n / 2
    shallow_med, deep_med = float(attn[~is_deep].median()), float(attn[is_deep].median())
    k = -(-n // 4)
    deep_k = sum(i >= n / 2 for i in by_score[:k])
    verdict = (
        f"{'same as' if same else 'differs from'} He et al.: mean attention score "
        f"{attn.mean():.4f} vs MLP {mlp.mean():.4f} (ratio {attn.mean() / mlp.mean():.2f}); "
        f"attention below MLP in {len(below)}/{n} layers; most redundant attention layer "
        f"{by_score[0]} ({'deeper' if deep else 'shallower'} half); median attention score "
        f"{deep_med:.4f} in the deeper half vs {shallow_med:.4f} in the shallower; "
        f"{deep_k} of the {k} most redundant attention layers are deep")
    return HeComparison([float(x) for x in attn], [float(x) for x in mlp], float(attn.mean()),
                        float(mlp.mean()), below, by_score, bool(deep), bool(same), verdict,
                        shallow_med, deep_med, k, int(deep_k))
