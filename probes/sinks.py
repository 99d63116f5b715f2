"""Attention sinks (Gu et al. 2024, "When Attention Sink Emerges in Language Models").

Many heads park most of their attention on the first token, whatever it is; Gu et al. measure
this per head and count the heads that do it. Here, per layer and head, from
``blocks.L.attn.hook_pattern`` (A, shape (batch, head, pos, key_pos)):

- ``sink_score``: the mean of A(i, 0) over real queries i > 0. Position 0 is the BOS token of a
  decoder or the [CLS] token of an encoder (:mod:`probes.tokens` puts it there; prompts are
  right-padded, so position 0 is always real).
- ``delimiter_score``: the mean of A(i, d) over the real queries i != d that may attend to the
  prompt's first delimiter d (decoder: i > d, by the causal mask; encoder: every real i != d).
  Prompts without a delimiter add nothing to it. The delimiter rule is :func:`first_delimiter`.
- ``n_queries`` / ``n_delimiter_queries``: how many queries each mean is over.

Means are pooled: every counted query of every prompt weighs the same (running float64 sums per
head, so memory is O(head) per layer whatever the number of prompts or layers). Padded queries
and keys never count; the padding mask comes in as ``mask`` and the tokens as
``ctx["str_tokens"]`` (:func:`probes.capture.capture` passes both). Without ``str_tokens`` the
delimiter statistic is skipped (its count stays 0, its value NaN).

The **sink rate** (:func:`sink_rate`) of a layer is the share of its heads whose sink score
exceeds ``SinkConfig.epsilon`` (strictly; Gu et al. use 0.3); the row with layer -1 is the share
over all heads of the model.

Tables: ``sinks`` (layer, head, stat, value) and ``sink_rate`` (layer, value, n_heads, epsilon).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from probes.accumulators import HookPlan

#: Separator tokens: when a prompt has one (an encoder's [SEP]), the first is its delimiter.
SEP_TOKENS = frozenset({"[SEP]"})
#: A decoder token is a delimiter if, once its space markers are dropped and its newline
#: spellings read as "\n", it is non-empty and made of these characters only.
DELIMITER_CHARS = frozenset(".,;:!?\n")
_SPACE_MARKERS = ("Ġ", "▁", " ", "\t")  # GPT-2 byte-level and SentencePiece spaces, raw ones
_NEWLINES = ("<0x0A>", "Ċ")  # SentencePiece byte token and GPT-2 byte-level newline

SINK_STATS = ("sink_score", "delimiter_score", "n_queries", "n_delimiter_queries")


@dataclass(frozen=True)
class SinkConfig:
    """Settings of the attention-sink probe."""

    epsilon: float = 0.3  # a head is a sink head if its sink score exceeds this (Gu et al.)

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon}")


def is_delimiter(token: str) -> bool:
    """Whether a decoder token is punctuation/newline: ".", ",", "\\n", "Ġ.", "...", "Ċ", ..."""
    for nl in _NEWLINES:
        token = token.replace(nl, "\n")
    for space in _SPACE_MARKERS:
        token = token.replace(space, "")
    return bool(token) and set(token) <= DELIMITER_CHARS


def first_delimiter(str_tokens: Sequence[str]) -> int | None:
    """Position of a prompt's first delimiter after position 0 (BOS/[CLS]), or None.

    Rule: if the prompt holds a separator token (:data:`SEP_TOKENS`, i.e. an encoder's
    [SEP]) after position 0, the delimiter is the first such one -- punctuation inside an
    encoder's sentence does not count. Otherwise it is the first token after position 0
    for which :func:`is_delimiter` holds ("." "," ";" ":" "!" "?" or a newline, alone or
    repeated, with any leading space marker).
    """
    tokens = list(str_tokens)
    after = range(1, len(tokens))
    sep = next((pos for pos in after if tokens[pos] in SEP_TOKENS), None)
    if sep is not None:
        return sep
    return next((pos for pos in after if is_delimiter(tokens[pos])), None)


def delimiter_positions(str_tokens: Sequence[Sequence[str]], lengths: torch.Tensor
                        ) -> torch.Tensor:
    """(batch,) long: each prompt's :func:`first_delimiter`, -1 where it has none."""
    if len(str_tokens) != len(lengths):
        raise ValueError(f"str_tokens has {len(str_tokens)} prompts, the batch {len(lengths)}")
    out = []
    for row, n in zip(str_tokens, lengths.tolist()):
        if len(row) != n:
            raise ValueError(f"a prompt has {len(row)} str_tokens but {n} real positions")
        pos = first_delimiter(row)
        out.append(-1 if pos is None else pos)
    return torch.tensor(out, dtype=torch.long)


def _key_weight(pattern: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """(batch, head, pos, key_pos) and (batch,) key positions -> (batch, head, pos) A(i, key_b)."""
    b, h, q, _ = pattern.shape
    idx = key.clamp_min(0).to(pattern.device)[:, None, None, None].expand(b, h, q, 1)
    return pattern.gather(-1, idx)[..., 0].double()


class SinkAccumulator:
    """Running sums of one layer's attention to position 0 and to the first delimiter.

    Register it on ``blocks.L.attn.hook_pattern`` (:func:`sink_hooks`). ``causal`` says which
    queries may attend to the delimiter (module docstring); it does not affect the sink score.
    """

    def __init__(self, layer: int, causal: bool = True):
        self.layer, self.causal = layer, causal
        self._sums: dict[str, torch.Tensor] = {}  # stat -> (head,) float64 sum of weights
        self._counts = {"sink": 0, "delimiter": 0}  # queries summed (the same for every head)

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.attn.hook_pattern"

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        b, h, q, _ = tensor.shape  # (batch, head, pos, key_pos)
        real = (torch.ones(b, q, dtype=torch.bool) if mask is None
                else mask.detach().bool().cpu())  # (batch, pos)
        if not bool(real[:, 0].all()):
            raise ValueError("position 0 (BOS/[CLS]) is padding in some prompt: the sink probe "
                             "needs right-padded batches (probes.tokens.tokenize makes them)")
        pos = torch.arange(q)[None, :]  # (1, pos)
        self._add("sink", _key_weight(tensor, torch.zeros(b, dtype=torch.long)), real & (pos > 0))
        str_tokens = ctx.get("str_tokens")
        if str_tokens is None:
            return
        d = delimiter_positions(str_tokens, real.sum(1))[:, None]  # (batch, 1)
        queries = real & (d >= 0) & ((pos > d) if self.causal else (pos != d))  # (batch, pos)
        self._add("delimiter", _key_weight(tensor, d[:, 0]), queries)

    def _add(self, which: str, weight: torch.Tensor, queries: torch.Tensor) -> None:
        """Add weight (batch, head, pos) at the queries (batch, pos) to the running sums."""
        sel = queries.to(weight.device)[:, None, :]  # (batch, 1, pos)
        total = (weight * sel).sum((0, 2))  # (head,) float64, on the pattern's device
        self._sums[which] = self._sums[which] + total if which in self._sums else total
        self._counts[which] += int(queries.sum())

    def _mean(self, which: str, n_heads: int) -> torch.Tensor:
        n = self._counts[which]
        if not n:
            return torch.full((n_heads,), float("nan"), dtype=torch.float64)
        return self._sums[which].cpu() / n

    def result(self) -> pd.DataFrame:
        """Long table: layer, head, stat (:data:`SINK_STATS`), value."""
        if "sink" not in self._sums:
            raise ValueError(f"sinks L{self.layer}: no batch was seen; feed at least one")
        n_heads = self._sums["sink"].numel()
        stats = {"sink_score": self._mean("sink", n_heads),
                 "delimiter_score": self._mean("delimiter", n_heads),
                 "n_queries": float(self._counts["sink"]),
                 "n_delimiter_queries": float(self._counts["delimiter"])}
        return pd.concat([pd.DataFrame({"layer": self.layer, "head": range(n_heads), "stat": name,
                                        "value": v.numpy() if torch.is_tensor(v) else v})
                          for name, v in stats.items()], ignore_index=True)


def sink_hooks(n_layers: int, config: SinkConfig = SinkConfig(), causal: bool = True,
               layers: list[int] | None = None) -> HookPlan:
    """One :class:`SinkAccumulator` per layer and the ``{hook: acc}`` map for capture.

    ``causal``: False for an encoder (``not probes.models.is_encoder(model)``); it only
    decides which queries count for the delimiter score. ``config`` is taken for symmetry
    with the other probes; its epsilon is applied by :func:`sink_rate`.
    """
    if not isinstance(config, SinkConfig):
        raise TypeError(f"config must be a SinkConfig, got {type(config).__name__}")
    layers = list(range(n_layers)) if layers is None else layers
    accs = [SinkAccumulator(layer, causal) for layer in layers]
    return HookPlan({a.hook_name(): a for a in accs}, accs)


def sink_rate(sinks: pd.DataFrame, config: SinkConfig = SinkConfig()) -> pd.DataFrame:
    """Share of heads with sink_score > epsilon, per layer and (layer -1) over the model.

    Columns: layer, value (the share), n_heads (heads with a score; a head without any
    query i > 0 has none and is left out), epsilon. The value is NaN if no head has a score.
    """
    score = sinks[(sinks["stat"] == "sink_score") & sinks["value"].notna()]
    rows = [(int(layer), g["value"]) for layer, g in score.groupby("layer", sort=True)]
    rows.append((-1, score["value"]))
    return pd.DataFrame({
        "layer": [layer for layer, _ in rows],
        "value": [float((v > config.epsilon).mean()) if len(v) else float("nan")
                  for _, v in rows],
        "n_heads": [len(v) for _, v in rows],
        "epsilon": config.epsilon,
    })
