"""One streaming pass over a prompt list that computes the chosen probes' tables.

    from probes.models import load_model
    from data.sentences import builtin_sentences
    tables = run_probes(load_model("minilm"), builtin_sentences())
    tables["entropy"], tables["massive"], tables["massive_summary"], tables["head_norms"]
    tables["sinks"], tables["sink_rate"]

All statistics share one forward pass per batch (one :func:`probes.capture.capture`), and
no activation outlives its batch.

Under torchrun (:mod:`probes.distributed`), each rank streams its contiguous block of the
prompts (``prompt`` columns keep the global index) and the accumulators are merged across
ranks before the tables are built, so every rank returns the one-process tables: counts,
sums, min/max exact, means/stds to float rounding (Chan et al.'s parallel formula), entropy
quantiles exact while a head's queries fit in its reservoir and otherwise from the bottom-k
merge of the ranks' reservoirs (each rank draws its own keys), massive rows in rank order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
import torch

from probes.capture import stream
from probes.distributed import merge_accumulators, rank_info, shard_range
from probes.entropy import EntropyConfig, entropy_hooks
from probes.massive import MassiveConfig, massive_hooks, massive_summary
from probes.models import LoadedModel, is_encoder
from probes.norms import norm_hooks
from probes.sinks import SinkConfig, sink_hooks, sink_rate

PROBES = ("entropy", "massive", "norms", "sinks")
#: probe -> the tables it produces (names in data.schemas)
TABLES = {"entropy": ("entropy",), "massive": ("massive", "massive_summary"),
          "norms": ("head_norms",), "sinks": ("sinks", "sink_rate")}


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of :func:`run_probes` (one sub-config per probe)."""

    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    massive: MassiveConfig = field(default_factory=MassiveConfig)
    sinks: SinkConfig = field(default_factory=SinkConfig)
    max_len: int | None = None  # longest prompt allowed in tokens (default: the model's n_ctx)

    def __post_init__(self) -> None:
        if not (isinstance(self.entropy, EntropyConfig) and isinstance(self.massive, MassiveConfig)
                and isinstance(self.sinks, SinkConfig)):
            raise TypeError("ProbeConfig(entropy=EntropyConfig(...), massive=MassiveConfig(...), "
                            "sinks=SinkConfig(...))")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")


def parse_what(what: str | Sequence[str]) -> tuple[str, ...]:
    """'entropy,massive' or a sequence -> validated tuple of probe names."""
    items = [w.strip() for w in (what.split(",") if isinstance(what, str) else what)]
    items = [w for w in items if w]
    bad = [w for w in items if w not in PROBES]
    if bad or not items:
        raise ValueError(f"unknown probe(s) {bad or what!r}: choose from {', '.join(PROBES)}")
    return tuple(dict.fromkeys(items))


class GlobalPromptIndex:
    """Accumulator wrapper: shifts ``prompt_index`` from a rank's block to the whole list."""

    def __init__(self, acc, offset: int):
        self.acc, self.offset = acc, offset

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx) -> None:
        if ctx.get("prompt_index") is not None:
            ctx["prompt_index"] = ctx["prompt_index"] + self.offset
        self.acc.update(tensor, mask, **ctx)

    def result(self) -> pd.DataFrame:
        return self.acc.result()


def run_probes(
    loaded: LoadedModel,
    prompts: Sequence[str],
    what: str | Sequence[str] = PROBES,
    batch_size: int = 16,
    config: ProbeConfig = ProbeConfig(),
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Stream ``prompts`` once and return ``{table name: DataFrame}`` for the probes in ``what``.

    Tables: ``entropy`` (layer, head, stat, value), ``massive`` (layer, prompt, position, token,
    dim, value, ratio), ``massive_summary`` (layer, stat, value), ``head_norms`` (layer, head,
    stat, value), ``sinks`` (layer, head, stat, value) and ``sink_rate`` (layer, value, n_heads,
    epsilon; layer -1 = the whole model); each also has a ``model`` column.
    """
    what = parse_what(what)
    model = loaded.model
    info = rank_info()
    offset = 0
    if info.distributed:  # this rank's block of prompts; independent reservoir keys per rank
        shard = shard_range(len(prompts), info)
        prompts, offset = list(prompts)[shard.as_slice()], shard.start
        config = replace(config, entropy=replace(config.entropy,
                                                 seed=config.entropy.seed + 7919 * info.rank))
    plans = {}
    if "entropy" in what:
        plans["entropy"] = entropy_hooks(model, config=config.entropy)
    if "massive" in what:
        plans["massive"] = massive_hooks(model, config.massive)
    if "norms" in what:
        plans["norms"] = norm_hooks(model)
    if "sinks" in what:
        plans["sinks"] = sink_hooks(model.cfg.n_layers, config.sinks,
                                    causal=not is_encoder(loaded))
    hooks: dict = {}
    wrapped: dict[int, object] = {}
    for plan in plans.values():
        for name, acc in plan.hooks.items():
            acc = wrapped.setdefault(id(acc), GlobalPromptIndex(acc, offset)) if offset else acc
            hooks.setdefault(name, []).append(acc)
    with torch.inference_mode():
        stream(loaded, prompts, hooks, batch_size=batch_size, max_len=config.max_len,
               progress=progress)
    if info.distributed:
        merge_accumulators([acc for plan in plans.values() for acc in plan.accumulators])
    tables: dict[str, pd.DataFrame] = {}
    if "entropy" in plans:
        tables["entropy"] = plans["entropy"].table()
    if "massive" in plans:
        tables["massive"] = plans["massive"].table()
        tables["massive_summary"] = massive_summary(plans["massive"].accumulators)
    if "norms" in plans:
        tables["head_norms"] = plans["norms"].table()
    if "sinks" in plans:
        tables["sinks"] = plans["sinks"].table()
        tables["sink_rate"] = sink_rate(tables["sinks"], config.sinks)
    return {name: df.assign(model=loaded.name) for name, df in tables.items()}
