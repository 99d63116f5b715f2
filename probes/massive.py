"""Massive activations (Sun et al. 2024, "Massive Activations in Large Language Models").

A massive activation is a residual-stream scalar whose magnitude exceeds both an absolute
threshold (default 100) and ``ratio`` times the median magnitude of its hidden states (default
1000x). Following the paper, the median is taken over the whole hidden state of one sequence at
that layer (all its real tokens x all dims; ``torch.median``, i.e. the lower median), so a
sequence's statistics do not depend on padding or on the other prompts in its batch.

Where the residual stream is read: ``blocks.L.hook_resid_post``. In a pre-LN decoder that is the
residual stream itself. In TransformerLens' BERT block (``BertBlock.forward``)
``resid_post = ln1(resid_pre + attn_out) + mlp_out`` and the block returns
``ln2(resid_post)``, so ``hook_resid_post`` is the sum *before* the block's final LayerNorm,
where BERT's massive values live (MiniLM: dim 99 on [CLS], ~220 at layer 0 vs a median ~0.37;
after ln2 it is ~8).

Outputs: one row per massive activation (layer, prompt, position, token, dim, value, ratio)
and a per-layer summary (means over sequences of the per-sequence top-1, top-2 and median
magnitudes and of top1/median, which is the "Hidden Dynamics" paper's r(t); top1_max is the
maximum over sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from probes.accumulators import HookPlan


@dataclass(frozen=True)
class MassiveConfig:
    """Thresholds of the massive-activation scan."""

    abs_threshold: float = 100.0  # |value| must exceed this (Sun et al.: 100)
    ratio_threshold: float = 1000.0  # and exceed this many times the sequence's median |h|
    hook: str = "hook_resid_post"  # residual-stream hook read at every block

    def __post_init__(self) -> None:
        if self.abs_threshold < 0 or self.ratio_threshold < 0:
            raise ValueError(f"massive thresholds must be >= 0, got abs={self.abs_threshold}, "
                             f"ratio={self.ratio_threshold}")
        if not self.hook.startswith("hook_"):
            raise ValueError(f"hook must be a block hook like 'hook_resid_post', got {self.hook!r}")


class SequenceMagnitudes:
    """Per-sequence magnitude statistics of one (batch, pos, d_model) hidden state."""

    def __init__(self, hidden: torch.Tensor, mask: torch.Tensor | None):
        mag = hidden.detach().abs().float()  # (batch, pos, d_model)
        if mask is not None:
            mag = mag * mask.to(mag.device, mag.dtype)[..., None]  # padded -> 0, never a top
        self.mag = mag
        # lower median over each sequence's real (pos, d_model) entries, in one call: padded
        # entries become NaN, which nanmedian skips (no Python loop over the sequences)
        real = mag if mask is None else mag.masked_fill(~mask.bool().to(mag.device)[..., None],
                                                         float("nan"))
        self.median = real.flatten(1).nanmedian(1).values  # (batch,)
        top = mag.flatten(1).topk(min(2, mag[0].numel()), dim=1).values  # (batch, 2)
        self.top1 = top[:, 0]
        self.top2 = top[:, -1]


class MassiveAccumulator:
    """Streams one layer's residual stream: massive activations + magnitude summary."""

    def __init__(self, layer: int, config: MassiveConfig = MassiveConfig()):
        self.layer, self.config = layer, config
        self._rows: list[pd.DataFrame] = []
        self._summ: list[torch.Tensor] = []  # (batch, 4): top1, top2, median, ratio
        self._seen = 0

    def hook_name(self) -> str:
        return f"blocks.{self.layer}.{self.config.hook}"

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        st = SequenceMagnitudes(tensor, mask)
        ratio = st.top1 / st.median.clamp_min(1e-30)
        self._summ.append(torch.stack([st.top1, st.top2, st.median, ratio], 1).double().cpu())
        batch = tensor.shape[0]
        prompt_index = ctx.get("prompt_index")
        if prompt_index is None:
            prompt_index = torch.arange(self._seen, self._seen + batch)
        self._seen += batch
        thr = torch.maximum(torch.full_like(st.median, self.config.abs_threshold),
                            self.config.ratio_threshold * st.median)  # (batch,)
        hit = st.mag > thr[:, None, None]  # padded entries are 0: never hit
        if not hit.any():
            return
        b, pos, dim = hit.nonzero(as_tuple=True)
        values = tensor.detach()[b, pos, dim].double().cpu()
        str_tokens = ctx.get("str_tokens")
        b_l, pos_l = b.tolist(), pos.tolist()
        tokens = ([str_tokens[i][p] for i, p in zip(b_l, pos_l)] if str_tokens is not None
                  else [""] * len(b_l))
        self._rows.append(pd.DataFrame({
            "layer": self.layer, "prompt": prompt_index.cpu()[b.cpu()].numpy(),
            "position": pos_l, "token": tokens, "dim": dim.tolist(),
            "value": values.numpy(),
            "ratio": (values.abs() / st.median[b].double().cpu()).numpy(),
        }))

    def result(self) -> pd.DataFrame:
        """The massive activations found (columns of data.schemas 'massive' + prompt)."""
        cols = ["layer", "prompt", "position", "token", "dim", "value", "ratio"]
        if not self._rows:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
                cols, ["int64", "int64", "int64", "object", "int64", "float64", "float64"])})
        return pd.concat(self._rows, ignore_index=True)[cols]

    def summary(self) -> pd.DataFrame:
        """Per-layer summary: stat in top1 | top2 | median | ratio | top1_max | n_sequences."""
        if not self._summ:
            raise ValueError(f"layer {self.layer}: no batch was seen; run a forward first")
        s = torch.cat(self._summ)  # (prompt, 4)
        mean = s.mean(0)
        stats = {"top1": mean[0], "top2": mean[1], "median": mean[2], "ratio": mean[3],
                 "top1_max": s[:, 0].max(), "n_sequences": torch.tensor(float(len(s)))}
        return pd.DataFrame({"layer": self.layer, "stat": list(stats),
                             "value": [float(v) for v in stats.values()]})


def massive_hooks(model: Any, config: MassiveConfig = MassiveConfig(),
                  layers: list[int] | None = None) -> HookPlan:
    """One :class:`MassiveAccumulator` per layer and the ``{hook: acc}`` map for capture."""
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    accs = [MassiveAccumulator(layer, config) for layer in layers]
    return HookPlan({a.hook_name(): a for a in accs}, accs)


def massive_summary(accs: list[MassiveAccumulator]) -> pd.DataFrame:
    """The per-layer summaries of all layers (table 'massive_summary')."""
    return pd.concat([a.summary() for a in accs], ignore_index=True)


def massive_carriers(massive: pd.DataFrame, by: str = "dim") -> pd.DataFrame:
    """Which dims (``by="dim"``) or tokens (``by="token"``) carry the massive activations.

    Columns: ``by``, count, max_abs, layers (sorted list as a string), n_prompts.
    """
    if by not in ("dim", "token"):
        raise ValueError(f"by must be 'dim' or 'token', got {by!r}")
    if massive.empty:
        return pd.DataFrame(columns=[by, "count", "max_abs", "layers", "n_prompts"])
    g = massive.assign(abs_value=massive["value"].abs()).groupby(by)
    out = pd.DataFrame({
        "count": g.size(), "max_abs": g["abs_value"].max(),
        "layers": g["layer"].agg(lambda s: ",".join(map(str, sorted(set(s))))),
        "n_prompts": g["prompt"].nunique(),
    }).reset_index()
    return out.sort_values(["count", "max_abs"], ascending=False, ignore_index=True)
