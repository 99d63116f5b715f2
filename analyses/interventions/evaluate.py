"""What a model does with intervention hooks attached: held-out text and task metrics.

- causal LMs: ``lm_loss`` (mean next-token cross-entropy over real targets,
  :func:`data.metrics.next_token_nll`) and ``perplexity`` = exp(lm_loss) on held-out text, the
  sink rate per layer on that text (:mod:`probes.sinks`), and top-1 accuracy on the model's
  default tasks (:func:`data.tasks.default_tasks`);
- encoders (MiniLM) have no next-token loss: ``embedding_cos`` (mean cosine between each
  held-out sentence's pooled embedding and the unpatched model's) and ``nn_agreement`` (share of
  sentences whose nearest neighbour among the held-out sentences is unchanged), as in the
  redundancy study.

Hooks are attached with :func:`probes.hooks.scoped_hooks` for the whole evaluation; objects in
``maskable`` (hooks that need the batch, e.g. :class:`~analyses.interventions.massive.
MassivePatch`) get each batch's token ids, padding mask and global index of its first sequence
(``set_batch``) before its forward.

Under torchrun (:mod:`probes.distributed`) ``tokens`` and the task datasets may be this rank's
block (``first`` / ``firsts``: the global index of its first row); losses and counts are summed
over ranks, the sink-rate accumulators merged and encoder embeddings gathered in rank order, so
every rank returns the whole data's metrics. One process: no-ops.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd
import torch

from analyses.redundancy.evaluation import nearest_neighbours, scored_logits
from data.metrics import next_token_nll
from probes.capture import capture
from probes.distributed import all_gather, merge_accumulators, sum_over_ranks
from probes.hooks import Hooks, scoped_hooks
from probes.models import LoadedModel
from probes.sinks import SinkConfig, sink_hooks, sink_rate
from probes.tokens import Tokens, batches, forward, pool_embedding

SINKS = SinkConfig()  # Gu et al.'s epsilon 0.3


class TextResult(NamedTuple):
    """Metrics on held-out text and the sink rate per layer measured on it."""

    metrics: dict[str, float]  # lm_loss, perplexity | embedding_cos, nn_agreement
    sink_rate: pd.DataFrame | None  # probes.sinks.sink_rate table (layer -1: whole model)


def _set_batch(maskable: Sequence[Any], ids: torch.Tensor | None,
               mask: torch.Tensor | None, first: int = 0) -> None:
    for m in maskable:
        m.set_batch(ids, mask, first)


def _gathered(t: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of ``t`` in rank order (one process: ``t``)."""
    return torch.cat(all_gather(t))


@torch.no_grad()
def base_embeddings(loaded: LoadedModel, tokens: Tokens, batch_size: int) -> torch.Tensor:
    """(prompt, d_model) pooled embeddings of the unpatched encoder (the reference)."""
    return torch.cat([pool_embedding(forward(loaded, b).float(),
                                     b.attention_mask.to(loaded.cfg.device)).cpu()
                      for b in batches(tokens, batch_size)])


@torch.no_grad()
def evaluate_text(loaded: LoadedModel, tokens: Tokens, hooks: Hooks = (),
                  maskable: Sequence[Any] = (), batch_size: int = 16, sinks: bool = True,
                  sink_config: SinkConfig = SINKS,
                  reference: torch.Tensor | None = None, first: int = 0) -> TextResult:
    """:class:`TextResult` of ``loaded`` on ``tokens`` with ``hooks`` attached.

    An encoder needs ``reference``, the unpatched embeddings (:func:`base_embeddings`) of the
    same rows. ``first``: the global index of ``tokens``' first row (a rank's block).
    """
    encoder = loaded.kind == "encoder"
    if encoder and reference is None:
        raise ValueError("an encoder is scored against the unpatched model: pass reference="
                         "base_embeddings(loaded, tokens, batch_size)")
    plan = sink_hooks(loaded.cfg.n_layers, sink_config, causal=not encoder) if sinks else None
    total, count, embs = 0.0, 0, []
    recording = capture(loaded, plan.hooks) if plan else contextlib.nullcontext()
    with recording as cap, scoped_hooks(loaded, hooks):
        for start, b in zip(range(0, len(tokens.ids), batch_size), batches(tokens, batch_size)):
            _set_batch(maskable, b.ids, b.bool_mask, first + start)
            out = cap.forward(b) if cap is not None else forward(loaded, b)
            if encoder:
                embs.append(pool_embedding(out.float(), b.attention_mask.to(out.device)).cpu())
            else:
                nll = next_token_nll(out, b.ids, b.attention_mask)
                total, count = total + float(nll.total), count + nll.count
    _set_batch(maskable, None, None)
    if plan:
        merge_accumulators(plan.accumulators)
    if encoder:
        emb, reference = _gathered(torch.cat(embs)), _gathered(reference)
        metrics = {"embedding_cos": float((emb * reference).sum(-1).mean()),
                   "nn_agreement": float((nearest_neighbours(emb)
                                          == nearest_neighbours(reference)).float().mean())}
    else:
        total, count = sum_over_ranks([total, count])
        loss = total / count
        metrics = {"lm_loss": loss, "perplexity": math.exp(loss)}
    rate = sink_rate(plan.table(), sink_config) if plan else None
    return TextResult(metrics, rate)


@torch.no_grad()
def task_accuracy(loaded: LoadedModel, datasets: Sequence, hooks: Hooks = (),
                  maskable: Sequence[Any] = (), firsts: Sequence[int] | None = None,
                  ) -> dict[str, float]:
    """``acc_<task>`` (top-1 on clean prompts) per dataset and ``acc_mean``, with ``hooks``.

    ``firsts``: per dataset, the global index of its first item (a rank's block; default 0);
    each accuracy is the item-weighted mean over ranks."""
    from data.tasks import accuracy

    if not datasets:
        return {}
    firsts = [0] * len(datasets) if firsts is None else firsts
    out = {}
    with scoped_hooks(loaded, hooks):
        for ds, first in zip(datasets, firsts):
            # equal-length prompts: no padding
            _set_batch(maskable, ds.clean_tokens, None, first)
            n = len(ds)
            hits, items = sum_over_ranks([accuracy(scored_logits(loaded, ds), ds) * n, n])
            out[f"acc_{ds.name}"] = hits / items
    _set_batch(maskable, None, None)
    out["acc_mean"] = sum(out.values()) / len(datasets)
    return out
