"""The computational graph of a decoder whose edges EAP scores and circuits keep or ablate.

Nodes (Hanna et al. 2024; MIB, Mueller et al. 2025): ``input`` (the embeddings, read at
``blocks.0.hook_resid_pre``), every attention head ``L{l}H{h}`` (its output ``z_h W_O^h``,
without ``b_O``), every MLP ``mlp{l}`` (``hook_mlp_out``) and ``logits``. An edge runs from an
upstream node's output to one input of a downstream node: a head's query, key or value input
(``L1H2(q)``, ``L1H2(k)``, ``L1H2(v)``; hooks ``hook_{q,k,v}_input``), an MLP's input
(``hook_mlp_in``) or the logits' input (the last ``hook_resid_post``, before ``ln_final``).
A downstream input receives every node of earlier layers and the input; an MLP also receives
the heads of its own layer. Biases and ``b_O`` belong to no node: they are equal in the clean
and corrupted runs, so no edge carries them.

GQA decision (SmolLM2: 9 query heads share 3 key/value heads): edges into keys and values
are **per query head**, as MIB and EAP-IG define them. TransformerLens'
``ungroup_grouped_query_attention`` gives every query head its own copy of the key/value
input and computes its k/v with the shared KV projection (``repeat_interleave`` of
``_W_K``/``_W_V``), so the forward pass is exactly the grouped one, and an edge into
``L5H4(k)`` changes the keys that query head 4 reads and no other head's.
:func:`edge_hooks` turns on that switch together with ``use_split_qkv_input`` and
``use_hook_mlp_in`` (which create the input hook points) and restores all three in ``finally``.

TransformerLens has the hook points but no edge graph; EAP-IG's ``Graph`` does, on its own
hook wiring (and CUDA-only tensors), so attnlab keeps this small index of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from data.notation import head_label
from probes.models import unwrap

QKV = ("q", "k", "v")
INPUT_HOOK = "blocks.0.hook_resid_pre"


@dataclass(frozen=True)
class Node:
    """An upstream node: what writes into the residual stream."""

    name: str  # input | L1H2 | mlp1
    kind: str  # input | head | mlp
    layer: int  # -1 for the input
    head: int = -1


@dataclass(frozen=True)
class Target:
    """A downstream input: what reads from the residual stream."""

    name: str  # L1H2(q) | mlp1 | logits
    kind: str  # q | k | v | mlp | logits
    layer: int  # n_layers for the logits
    head: int = -1
    n_up: int = 0  # the first n_up sources (forward order) feed it


@dataclass(frozen=True)
class EdgeGraph:
    """Sources in forward order, targets in forward order, and which pairs are edges.

    Scores and circuit masks are ``(source, target)`` matrices; ``real`` marks the pairs that
    are edges (source ``s`` feeds target ``t`` iff ``s < targets[t].n_up``).
    """

    n_layers: int
    n_heads: int
    has_mlp: bool
    sources: tuple[Node, ...]
    targets: tuple[Target, ...]

    @property
    def n_edges(self) -> int:
        return sum(t.n_up for t in self.targets)

    @property
    def real(self) -> torch.Tensor:
        """(source, target) bool: True where the pair is an edge."""
        n_up = torch.tensor([t.n_up for t in self.targets])
        return torch.arange(len(self.sources))[:, None] < n_up[None, :]

    def source_index(self, layer: int, head: int | None = None) -> int:
        """Index of head ``(layer, head)``, or of ``mlp{layer}`` when head is None."""
        per_layer = self.n_heads + int(self.has_mlp)
        if head is None and not self.has_mlp:
            raise ValueError("this model is attention-only: it has no MLP nodes")
        return 1 + layer * per_layer + (self.n_heads if head is None else head)

    def target_index(self, layer: int, kind: str, head: int = -1) -> int:
        """Index of ``L{layer}H{head}(kind)`` (kind q/k/v), ``mlp{layer}`` or ``logits``."""
        if kind == "logits":
            return len(self.targets) - 1
        per_layer = 3 * self.n_heads + int(self.has_mlp)
        if kind == "mlp":
            return layer * per_layer + 3 * self.n_heads
        return layer * per_layer + QKV.index(kind) * self.n_heads + head

    def edge_table_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(source indices, target indices) of every edge, targets in forward order."""
        s, t = torch.nonzero(self.real.T, as_tuple=True)
        return t, s


def build_graph(model: Any) -> EdgeGraph:
    """The edge graph of a TransformerLens decoder (organism, SmolLM2, GPT-2-style models)."""
    cfg = unwrap(model).cfg
    if getattr(cfg, "parallel_attn_mlp", False):
        raise ValueError("parallel attention/MLP blocks (GPT-J, NeoX) are not supported: their "
                         "MLP does not read the heads of its own layer; use a sequential model")
    if getattr(cfg, "use_normalization_before_and_after", False):
        raise ValueError("models that normalise the attention output (Gemma-style) are not "
                         "supported: a head's write is not its z W_O")
    n_layers, n_heads, has_mlp = cfg.n_layers, cfg.n_heads, not cfg.attn_only
    sources: list[Node] = [Node("input", "input", -1)]
    targets: list[Target] = []
    for layer in range(n_layers):
        n_up = len(sources)
        targets += [Target(f"{head_label(layer, h)}({x})", x, layer, h, n_up)
                    for x in QKV for h in range(n_heads)]
        sources += [Node(head_label(layer, h), "head", layer, h) for h in range(n_heads)]
        if has_mlp:
            targets.append(Target(f"mlp{layer}", "mlp", layer, -1, len(sources)))
            sources.append(Node(f"mlp{layer}", "mlp", layer))
    targets.append(Target("logits", "logits", n_layers, -1, len(sources)))
    return EdgeGraph(n_layers, n_heads, has_mlp, tuple(sources), tuple(targets))


def source_hooks(graph: EdgeGraph) -> list[str]:
    """The hook points whose activations give every source's output, in forward order."""
    names = [INPUT_HOOK]
    for layer in range(graph.n_layers):
        names.append(f"blocks.{layer}.attn.hook_z")
        if graph.has_mlp:
            names.append(f"blocks.{layer}.hook_mlp_out")
    return names


def target_hooks(graph: EdgeGraph) -> list[str]:
    """The hook points of every downstream input, in forward order."""
    names = []
    for layer in range(graph.n_layers):
        names += [f"blocks.{layer}.hook_{x}_input" for x in QKV]
        if graph.has_mlp:
            names.append(f"blocks.{layer}.hook_mlp_in")
    names.append(f"blocks.{graph.n_layers - 1}.hook_resid_post")
    return names


def target_slice(graph: EdgeGraph, name: str) -> slice:
    """The target columns that hook point ``name`` (a :func:`target_hooks` name) feeds."""
    layer = int(name.split(".")[1])
    kind = name.rsplit("hook_", 1)[1]
    if kind.endswith("_input"):
        start = graph.target_index(layer, kind[0], 0)
        return slice(start, start + graph.n_heads)
    idx = graph.target_index(layer, "mlp" if kind == "mlp_in" else "logits")
    return slice(idx, idx + 1)


def head_outputs(model: Any, layer: int, z: torch.Tensor) -> torch.Tensor:
    """Each head's write into the residual stream: ``z_h W_O^h``, (batch, pos, head, d_model)."""
    w_o = unwrap(model).blocks[layer].attn.W_O  # (head, d_head, d_model)
    return torch.einsum("bphe,hed->bphd", z, w_o)


@contextlib.contextmanager
def edge_hooks(model: Any) -> Iterator[None]:
    """Create the q/k/v- and MLP-input hook points (per query head under GQA) for the body.

    Sets ``use_split_qkv_input``, ``use_hook_mlp_in`` and, on GQA models,
    ``ungroup_grouped_query_attention``; restores the three in ``finally``. The forward pass
    computes the same function either way (tested).
    """
    cfg = unwrap(model).cfg
    names = ("use_split_qkv_input", "use_hook_mlp_in", "ungroup_grouped_query_attention")
    saved = {n: getattr(cfg, n) for n in names}
    try:
        cfg.use_split_qkv_input = True
        cfg.use_hook_mlp_in = True
        if cfg.n_key_value_heads is not None:
            cfg.ungroup_grouped_query_attention = True
        yield
    finally:
        for n, v in saved.items():
            setattr(cfg, n, v)
