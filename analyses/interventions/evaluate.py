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
MassivePatch`) get each batch's token ids and padding mask (``set_batch``) before its forward.
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
               mask: torch.Tensor | None) -> None:
    for m in maskable:
        m.set_batch(ids, mask)


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
                  reference: torch.Tensor | None = None) -> TextResult:
    """:class:`TextResult` of ``loaded`` on ``tokens`` with ``hooks`` attached.

    An encoder needs ``reference``, the unpatched embeddings (:func:`base_embeddings`).
    """
    encoder = loaded.kind == "encoder"
    if encoder and reference is None:
        raise ValueError("an encoder is scored against the unpatched model: pass reference="
                         "base_embeddings(loaded, tokens, batch_size)")
    plan = sink_hooks(loaded.cfg.n_layers, sink_config, causal=not encoder) if sinks else None
    total, count, embs = 0.0, 0, []
    recording = capture(loaded, plan.hooks) if plan else contextlib.nullcontext()
    with recording as cap, scoped_hooks(loaded, hooks):
        for b in batches(tokens, batch_size):
            _set_batch(maskable, b.ids, b.bool_mask)
            out = cap.forward(b) if cap is not None else forward(loaded, b)
            if encoder:
                embs.append(pool_embedding(out.float(), b.attention_mask.to(out.device)).cpu())
            else:
                nll = next_token_nll(out, b.ids, b.attention_mask)
                total, count = total + float(nll.total), count + nll.count
    _set_batch(maskable, None, None)
    if encoder:
        emb = torch.cat(embs)
        metrics = {"embedding_cos": float((emb * reference).sum(-1).mean()),
                   "nn_agreement": float((nearest_neighbours(emb)
                                          == nearest_neighbours(reference)).float().mean())}
    else:
        loss = total / count
        metrics = {"lm_loss": loss, "perplexity": math.exp(loss)}
    rate = sink_rate(plan.table(), sink_config) if plan else None
    return TextResult(metrics, rate)


@torch.no_grad()
def task_accuracy(loaded: LoadedModel, datasets: Sequence, hooks: Hooks = (),
                  maskable: Sequence[Any] = ()) -> dict[str, float]:
    """``acc_<task>`` (top-1 on clean prompts) per dataset and ``acc_mean``, with ``hooks``."""
    from data.tasks import accuracy

    if not datasets:
        return {}
    out = {}
    with scoped_hooks(loaded, hooks):
        for ds in datasets:
            _set_batch(maskable, ds.clean_tokens, None)  # equal-length prompts: no padding
            out[f"acc_{ds.name}"] = accuracy(scored_logits(loaded, ds), ds)
    _set_batch(maskable, None, None)
    out["acc_mean"] = sum(out.values()) / len(datasets)
    return out
