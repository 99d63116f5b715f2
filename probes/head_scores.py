"""Dataset-wide scores of every head, and each head's top prompts by output norm.

The head explorer's table (dashboard page "Heads", ``attnlab heads``). From the attention
pattern A (``hook_pattern``: (batch, head, pos, key_pos)) and the head output z_h W_O^h of
unpadded prompts (task prompts: every prompt of a set has one length), per head:

- ``prev_token``: mean A(i, i-1) over queries i >= 1;
- ``induction`` / ``duplicate``: over queries i whose token occurred earlier at p < i - 1 (the
  latest such p; :func:`repeat_targets`), mean A(i, p + 1) (the token after the earlier copy:
  induction) and mean A(i, p) (the earlier copy itself: duplicate-token). Only prompt sets
  named in ``repeated`` count (the induction task: a random sequence, then its start again), so
  incidental repeats of other tasks (IOI's repeated subject) do not mix in;
- ``entropy``: mean attention entropy -sum_j A(i, j) log A(i, j) over queries i >= 1 (nats);
- ``sink_score``: mean A(i, 0) over i >= 1, and ``sink_rate``: the share of those queries with
  A(i, 0) > epsilon (Gu et al. 2024's rate, per head and per query instead of per layer);
- ``output_norm``: mean ||z_h W_O^h|| over every token.

TransformerLens' ``head_detector`` scores previous-token / duplicate / induction heads too, but
one prompt at a time with its own hooks (``run_with_cache``) and no pooled counts; here every
score is one batched pass through :func:`probes.hooks.record` with pooled sums.

Top prompts: each prompt's largest head output norm over its positions; the ``top_k`` prompts
of each head with that head's attention pattern on them.

Under torchrun (``attnlab heads --nproc N``) each rank scores its contiguous block of every
prompt set (:func:`probes.distributed.shard_range`); the pooled sums and counts are added over
the ranks, and each rank's own top-k candidates per head are gathered and the global top-k
picked from them (ties broken by set order, then prompt index, as in one process).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from torch import Tensor

from probes.distributed import all_gather, rank_info, shard_range, sum_over_ranks
from probes.hooks import record
from probes.models import unwrap

STATS = ("prev_token", "induction", "duplicate", "entropy", "sink_score", "sink_rate",
         "output_norm", "n_queries", "n_repeat_queries")


@dataclass(frozen=True)
class HeadScoreConfig:
    """Settings of :func:`head_scores`."""

    sink_epsilon: float = 0.3  # a query is a sink query if A(i, 0) > this (Gu et al.: 0.3)
    top_k: int = 3  # top prompts kept per head
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= self.sink_epsilon < 1.0:
            raise ValueError(f"sink_epsilon must be in [0, 1), got {self.sink_epsilon}")
        if self.top_k < 0 or self.batch_size < 1:
            raise ValueError("top_k must be >= 0 and batch_size >= 1")


class HeadScores(NamedTuple):
    """The three tables of the head explorer."""

    scores: pd.DataFrame  # head_scores: layer, head, stat, value
    top_sequences: pd.DataFrame  # head_top_sequences
    top_patterns: pd.DataFrame  # head_top_patterns


def repeat_targets(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(batch, query, earlier) index triples: query i's token occurred at p < i - 1 (latest p)."""
    rows = []
    for b, ids in enumerate(tokens.tolist()):
        last: dict[int, int] = {}
        for i, tok in enumerate(ids):
            p = last.get(tok)
            if p is not None and p + 1 < i:
                rows.append((b, i, p))
            last[tok] = i
    t = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
    return t[:, 0], t[:, 1], t[:, 2]


class _Sums:
    """Running float64 sums per (layer, head) and their counts."""

    def __init__(self, n_layers: int, n_heads: int):
        self.s = {k: torch.zeros(n_layers, n_heads, dtype=torch.float64) for k in STATS[:7]}
        self.n_q = self.n_rep = self.n_tok = 0

    def table(self) -> pd.DataFrame:
        per = {"prev_token": self.n_q, "entropy": self.n_q, "sink_score": self.n_q,
               "sink_rate": self.n_q, "induction": self.n_rep, "duplicate": self.n_rep,
               "output_norm": self.n_tok}
        rows = []
        n_layers, n_heads = self.s["entropy"].shape
        for stat, count in per.items():
            vals = self.s[stat] / count if count else torch.full((n_layers, n_heads), float("nan"))
            rows += [(la, h, stat, float(vals[la, h])) for la in range(n_layers)
                     for h in range(n_heads)]
        rows += [(la, h, name, float(c)) for name, c in (("n_queries", self.n_q),
                                                         ("n_repeat_queries", self.n_rep))
                 for la in range(n_layers) for h in range(n_heads)]
        return pd.DataFrame(rows, columns=["layer", "head", "stat", "value"])

    def merge_ranks(self) -> None:
        """Add every rank's sums and counts (one process: nothing to do)."""
        if not rank_info().distributed:
            return
        keys = list(self.s)
        merged = sum_over_ranks([*(self.s[k] for k in keys), self.n_q, self.n_rep, self.n_tok])
        self.s = dict(zip(keys, merged[:len(keys)]))
        self.n_q, self.n_rep, self.n_tok = merged[len(keys):]


def _names(n_layers: int) -> list[str]:
    return [f"blocks.{la}.attn.{h}" for la in range(n_layers) for h in ("hook_pattern", "hook_z")]


def _accumulate(model, ids: Tensor, repeats: bool, cfg: HeadScoreConfig, sums: _Sums
                ) -> Tensor:
    """Add one batch to ``sums``; return its per-prompt max output norm (layer, batch, head)
    and the position of that max, stacked as (2, layer, batch, head)."""
    n_layers = model.cfg.n_layers
    acts = record(model, _names(n_layers), lambda: model(ids, stop_at_layer=n_layers)).acts
    n, n_pos = ids.shape
    q = torch.arange(1, n_pos)
    rb, rq, rp = repeat_targets(ids.cpu()) if repeats else (None, None, None)
    best = []
    for la in range(n_layers):
        A = acts[f"blocks.{la}.attn.hook_pattern"].double()  # (batch, head, pos, key_pos)
        s = sums.s
        s["prev_token"][la] += A[:, :, q, q - 1].sum((0, 2)).cpu()
        s["entropy"][la] += torch.special.entr(A[:, :, 1:]).sum(-1).sum((0, 2)).cpu()
        s["sink_score"][la] += A[:, :, 1:, 0].sum((0, 2)).cpu()
        s["sink_rate"][la] += (A[:, :, 1:, 0] > cfg.sink_epsilon).sum((0, 2)).double().cpu()
        if rb is not None and len(rb):
            s["induction"][la] += A[rb, :, rq, rp + 1].sum(0).cpu()
            s["duplicate"][la] += A[rb, :, rq, rp].sum(0).cpu()
        z = acts[f"blocks.{la}.attn.hook_z"]  # (batch, pos, head, d_head)
        norm = torch.einsum("bphd,hdm->bphm", z, model.blocks[la].attn.W_O).norm(dim=-1)
        s["output_norm"][la] += norm.double().sum((0, 1)).cpu()  # norm: (batch, pos, head)
        val, pos = norm.max(1)  # (batch, head)
        best.append(torch.stack([val.float(), pos.float()]).cpu())
    sums.n_q += n * (n_pos - 1)
    sums.n_tok += n * n_pos
    sums.n_rep += 0 if rb is None else len(rb)
    return torch.stack(best, 1)  # (2, layer, batch, head)


def _str_tokens(model, ids: Tensor) -> list[str]:
    try:
        return [str(t) for t in model.to_str_tokens(ids)]
    except Exception:  # noqa: BLE001 - a model without a tokenizer: show the ids
        return [str(int(t)) for t in ids]


def _top_k(best: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The ``top_k`` rows of each head by norm; ties by set order (``set_index``), then prompt."""
    order = best.sort_values(["norm", "set_index", "sequence"], ascending=[False, True, True],
                             kind="stable")
    return order.groupby(["layer", "head"], sort=True).head(top_k)


def _global_top_k(best: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """:func:`_top_k` over every rank's prompts: each rank's candidates gathered, then re-ranked
    (a head's global top-k are among the ranks' own top-k)."""
    return _top_k(pd.concat(all_gather(_top_k(best, top_k)), ignore_index=True), top_k)


def _top_tables(model, datasets: Mapping[str, Tensor], best: pd.DataFrame, top_k: int):
    """head_top_sequences and head_top_patterns from the per-prompt max norms ``best``."""
    top = _global_top_k(best, top_k).copy()
    top["rank"] = top.groupby(["layer", "head"]).cumcount()
    seq_rows, pat_rows = [], []
    for (name, seq), group in top.groupby(["dataset", "sequence"]):
        ids = datasets[name][int(seq)][None].to(model.cfg.device)
        layers = sorted(group["layer"].unique())
        names = [f"blocks.{la}.attn.hook_pattern" for la in layers]
        stop = int(max(layers)) + 1
        acts = record(model, names, lambda ids=ids, stop=stop: model(
            ids, stop_at_layer=stop)).acts
        tokens = json.dumps(_str_tokens(model, ids[0].cpu()))
        qi, ki = torch.tril_indices(ids.shape[1], ids.shape[1])
        for r in group.itertuples():
            seq_rows.append((r.layer, r.head, r.rank, name, int(seq), r.position, r.norm, tokens))
            w = acts[f"blocks.{r.layer}.attn.hook_pattern"][0, r.head][qi, ki].float().cpu()
            pat_rows.append(pd.DataFrame({"layer": r.layer, "head": r.head, "rank": r.rank,
                                          "query_pos": qi.numpy(), "key_pos": ki.numpy(),
                                          "weight": w.numpy()}))
    seqs = pd.DataFrame(seq_rows, columns=["layer", "head", "rank", "dataset", "sequence",
                                           "position", "norm", "tokens"])
    pats = pd.concat(pat_rows, ignore_index=True) if pat_rows else pd.DataFrame(
        columns=["layer", "head", "rank", "query_pos", "key_pos", "weight"])
    order = ["layer", "head", "rank"]
    return (seqs.sort_values(order, ignore_index=True),
            pats.sort_values([*order, "query_pos", "key_pos"], ignore_index=True))


@torch.no_grad()
def head_scores(loaded, datasets: Mapping[str, Tensor], repeated: Sequence[str] = ("induction",),
                config: HeadScoreConfig | None = None) -> HeadScores:
    """Scores of every head of a causal decoder over ``datasets`` (name -> (batch, pos) ids).

    ``repeated``: the names of the sets whose repeated tokens define the induction and
    duplicate-token scores (module docstring).
    """
    model = unwrap(loaded)
    if getattr(model.cfg, "attention_dir", "causal") != "causal" or not hasattr(model, "blocks"):
        raise ValueError("head scores need a causal decoder (previous-token and induction "
                         "scores assume causal attention)")
    if not datasets:
        raise ValueError("no prompt sets given")
    missing = [name for name in repeated if name not in datasets]
    if missing:
        raise ValueError(f"repeated sets {missing} are not among the datasets {list(datasets)}")
    config = config or HeadScoreConfig()
    sums = _Sums(model.cfg.n_layers, model.cfg.n_heads)
    frames = []
    for set_index, (name, ids) in enumerate(datasets.items()):
        if ids.ndim != 2 or ids.shape[1] < 2:
            raise ValueError(f"prompt set {name!r}: need (batch, pos) ids with pos >= 2")
        mine = shard_range(ids.shape[0])  # this rank's prompts (all of them in one process)
        for start in range(mine.start, mine.stop, config.batch_size):
            chunk = ids[start:min(start + config.batch_size, mine.stop)].to(model.cfg.device)
            best = _accumulate(model, chunk, name in repeated, config, sums)
            n_layers, n, n_heads = best.shape[1:]
            la, b, h = torch.meshgrid(torch.arange(n_layers), torch.arange(n),
                                      torch.arange(n_heads), indexing="ij")
            frames.append(pd.DataFrame({
                "layer": la.flatten().numpy(), "head": h.flatten().numpy(), "dataset": name,
                "set_index": set_index, "sequence": (b.flatten() + start).numpy(),
                "norm": best[0].flatten().numpy(), "position": best[1].flatten().long().numpy()}))
    sums.merge_ranks()
    best_df = pd.concat(frames, ignore_index=True)
    seqs, pats = _top_tables(model, datasets, best_df, config.top_k)
    return HeadScores(sums.table(), seqs, pats)
