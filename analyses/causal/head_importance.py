"""Per-head importance: measured ablation drop vs a first-order Taylor estimate.

For each head h (output ``z_h`` at ``blocks.L.attn.hook_z``, shape (batch, pos, head, d_head))
and a scalar task metric M (higher = better):

- ``zero``: M(clean) - M(z_h := 0), measured by re-running the model;
- ``mean``: M(clean) - M(z_h := mean of z_h over the dataset) (per position when the prompts
  share one length, as organism tasks do; else over all real tokens);
- ``taylor_zero`` / ``taylor_mean``: the first-order estimate of the same drops from one
  backward pass, ``dM/dz_h . (z_h - z_ablated)`` summed over positions and d_head (Michel et
  al. 2019's gradient head importance, signed, in metric units so it is comparable).

This is the head-importance view of the ViT visual-analytics work (ablate each head, watch
the metric) with the gradient proxy beside it; :func:`rank_correlations` gives the Spearman
correlation between the methods. TransformerLens offers the hooks but no per-head ablation
sweep or Taylor proxy, hence this module.

Metrics: organism tasks use the mean logit difference (docs/METHODS.md §4). MiniLM uses the
paraphrase margin (mean cosine of same-group pairs minus mean cosine of different-group pairs
of pooled embeddings): the "similarity to the full model's embedding" metric sits at its
maximum on the clean run, where its gradient vanishes and a Taylor estimate says nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd
import torch

from analyses.causal.ablation import mean_ablation_value
from probes.hooks import HookFn, scoped_hooks
from probes.models import LoadedModel
from probes.tokens import Tokens, forward, pool_embedding

METHODS = ("zero", "mean", "taylor_zero", "taylor_mean")


class HeadTask(NamedTuple):
    """A scalar metric of one forward pass; ``run()`` must be called inside hooks."""

    task: str  # task name, e.g. "ioi" or "paraphrase"
    metric: str  # metric name, e.g. "logit_diff"
    run: Callable[[], torch.Tensor]  # forward -> scalar metric (differentiable)
    mask: torch.Tensor  # (batch, pos) bool real tokens of the forward pass


def organism_head_task(loaded: LoadedModel, dataset) -> HeadTask:
    """Mean logit difference on a :class:`data.tasks.TaskDataset`'s clean prompts."""
    from data.tasks import logit_diff

    tokens = dataset.clean_tokens.to(loaded.cfg.device)  # (batch, pos), no padding

    def run() -> torch.Tensor:
        return logit_diff(loaded.model(tokens), dataset).mean()

    return HeadTask(dataset.name, "logit_diff", run, torch.ones_like(tokens, dtype=torch.bool))


def paraphrase_head_task(loaded: LoadedModel, tokens: Tokens, group: torch.Tensor) -> HeadTask:
    """Paraphrase margin of pooled embeddings; ``group`` (batch,) is each sentence's group id."""
    same = group[:, None] == group[None, :]  # (batch, batch)
    off_diag = ~torch.eye(len(group), dtype=torch.bool)

    def run() -> torch.Tensor:
        hidden = forward(loaded, tokens)  # (batch, pos, d_model)
        emb = pool_embedding(hidden, tokens.attention_mask.to(hidden.device)).float()
        sim = (emb @ emb.T).cpu()  # (batch, batch)
        return sim[same & off_diag].mean() - sim[~same].mean()

    return HeadTask("paraphrase", "paraphrase_margin", run, tokens.attention_mask.bool())


def _z_names(cfg) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)]


def _record_z(loaded: LoadedModel, task: HeadTask):
    """One forward + ``autograd.grad``: clean metric, z and dM/dz per layer.

    Each z gets a zero leaf added (``z + delta``), so dM/d(delta) = dM/dz through every path,
    while the weights' ``.grad`` is never touched.
    """
    zs: dict[str, torch.Tensor] = {}
    deltas: dict[str, torch.Tensor] = {}

    def tap(name: str) -> HookFn:
        def hook(tensor: torch.Tensor) -> torch.Tensor:
            zs[name] = tensor.detach()
            deltas[name] = torch.zeros_like(tensor, requires_grad=True)
            return tensor + deltas[name]

        return hook

    taps = {n: tap(n) for n in _z_names(loaded.cfg)}
    with scoped_hooks(loaded.model, taps), torch.enable_grad():
        metric = task.run()
        names = list(deltas)
        grads = torch.autograd.grad(metric, [deltas[n] for n in names], allow_unused=True)
    grads = {n: torch.zeros_like(zs[n]) if g is None else g for n, g in zip(names, grads)}
    return float(metric.detach()), zs, grads


def _ablated_metric(loaded, task: HeadTask, name: str, head: int, value: torch.Tensor) -> float:
    def replace(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        tensor[:, :, head] = value[:, :, head].to(tensor.dtype)
        return tensor

    with scoped_hooks(loaded.model, {name: replace}), torch.no_grad():
        return float(task.run())


def head_importance(loaded: LoadedModel, task: HeadTask) -> pd.DataFrame:
    """Per-head drop in ``task``'s metric under each of :data:`METHODS` (tidy table).

    Columns: task, metric, layer, head, method, value (drop = M_clean - M_ablated, or its
    first-order estimate), clean_metric.
    """
    clean, zs, grads = _record_z(loaded, task)
    rows = []
    for layer, name in enumerate(_z_names(loaded.cfg)):
        z, g = zs[name], grads[name]  # (batch, pos, head, d_head)
        mean = mean_ablation_value(z, task.mask).expand_as(z)  # per position if unpadded
        ablations = {"zero": torch.zeros_like(z), "mean": mean}
        for method, value in ablations.items():
            taylor = (g * (z - value)).sum((0, 1, 3))  # (head,)
            for head in range(loaded.cfg.n_heads):
                drop = clean - _ablated_metric(loaded, task, name, head, value)
                rows += [(layer, head, method, drop), (layer, head, f"taylor_{method}",
                                                       float(taylor[head]))]
    df = pd.DataFrame(rows, columns=["layer", "head", "method", "value"])
    return df.assign(task=task.task, metric=task.metric, clean_metric=clean)[
        ["task", "metric", "layer", "head", "method", "value", "clean_metric"]]


PAIRS = (("zero", "taylor_zero"), ("mean", "taylor_mean"), ("zero", "mean"))


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation between methods over heads, per task."""
    from scipy.stats import spearmanr

    rows = []
    for task, sub in table.groupby("task", sort=False):
        wide = sub.pivot_table(index=["layer", "head"], columns="method", values="value")
        for a, b in PAIRS:
            rho = spearmanr(wide[a], wide[b]).statistic if len(wide) > 1 else float("nan")
            rows.append({"task": task, "method_a": a, "method_b": b, "spearman": float(rho),
                         "n_heads": len(wide)})
    return pd.DataFrame(rows)
