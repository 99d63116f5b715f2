"""Head scores against a per-prompt, per-query loop over TransformerLens' own cache."""

from __future__ import annotations

import json

import pytest
import torch
from transformer_lens import HookedTransformer

from probes.head_scores import HeadScoreConfig, head_scores, repeat_targets
from probes.models import LoadedModel
from tests.support.tiny import tiny_cfg


def _model() -> LoadedModel:
    torch.manual_seed(3)
    model = HookedTransformer(tiny_cfg(use_attn_result=True)).eval()
    return LoadedModel(model, None, "decoder", "tiny")


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    half = torch.randint(1, 50, (5, 4), generator=g)
    text = torch.randint(0, 50, (3, 6), generator=g)
    half[:, 0], text[:, 0] = torch.arange(10, 15), torch.arange(20, 23)  # no tied first tokens
    return {"repeat": torch.cat([half, half], 1), "text": text}


def _reference(model, data, repeated, eps):
    """Plain loops over every prompt and query of run_with_cache's patterns and results."""
    sums: dict = {}
    counts = {"q": 0, "rep": 0, "tok": 0}

    def add(stat, la, h, v):
        sums[(la, h, stat)] = sums.get((la, h, stat), 0.0) + float(v)

    for name, ids in data.items():
        _, cache = model.run_with_cache(ids)
        for b in range(ids.shape[0]):
            seq = ids[b].tolist()
            reps = [(i, max(p for p in range(i - 1) if seq[p] == seq[i])) for i in range(len(seq))
                    if any(seq[p] == seq[i] for p in range(i - 1))] if name in repeated else []
            counts["q"] += len(seq) - 1
            counts["tok"] += len(seq)
            counts["rep"] += len(reps)
            for la in range(model.cfg.n_layers):
                # A: (head, pos, key_pos); res: (pos, head, d_model)
                A, res = cache["pattern", la][b], cache["result", la][b]
                for h in range(model.cfg.n_heads):
                    for i in range(1, len(seq)):
                        row = A[h, i, : i + 1]
                        add("prev_token", la, h, A[h, i, i - 1])
                        add("entropy", la, h, -(row * row.log()).sum())
                        add("sink_score", la, h, A[h, i, 0])
                        add("sink_rate", la, h, A[h, i, 0] > eps)
                    for i, p in reps:
                        add("induction", la, h, A[h, i, p + 1])
                        add("duplicate", la, h, A[h, i, p])
                    add("output_norm", la, h, res[:, h].norm(dim=-1).sum())
    per = {"output_norm": "tok", "induction": "rep", "duplicate": "rep"}
    return {k: v / counts[per.get(k[2], "q")] for k, v in sums.items()}, counts


def test_scores_match_a_per_query_loop():
    lm, data = _model(), _data()
    out = head_scores(lm, data, ("repeat",), HeadScoreConfig(sink_epsilon=0.3, batch_size=2))
    ref, counts = _reference(lm.model, data, ("repeat",), 0.3)
    got = out.scores.set_index(["layer", "head", "stat"])["value"]
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key
    assert got[(0, 0, "n_repeat_queries")] == counts["rep"] == 5 * 4
    assert got[(1, 2, "n_queries")] == counts["q"]


def test_top_sequences_are_the_largest_norms_with_their_patterns():
    lm, data = _model(), _data()
    out = head_scores(lm, data, ("repeat",), HeadScoreConfig(top_k=2))
    _, cache = lm.model.run_with_cache(data["repeat"])
    norms = cache["result", 1][:, :, 3].norm(dim=-1)  # L1H3: (batch, pos)
    _, cache_t = lm.model.run_with_cache(data["text"])
    best = [(float(v), "repeat", b) for b, v in enumerate(norms.max(1).values)]
    best += [(float(v), "text", b) for b, v in enumerate(
        cache_t["result", 1][:, :, 3].norm(dim=-1).max(1).values)]
    best.sort(reverse=True)
    mine = out.top_sequences.query("layer == 1 and head == 3").sort_values("rank")
    assert list(zip(mine["dataset"], mine["sequence"])) == [(d, b) for _, d, b in best[:2]]
    assert mine["norm"].tolist() == pytest.approx([v for v, _, _ in best[:2]], rel=1e-5)
    first = mine.iloc[0]
    pats = out.top_patterns.query("layer == 1 and head == 3 and rank == 0")
    ids = data[first["dataset"]][first["sequence"]]
    assert len(json.loads(first["tokens"])) == len(ids)
    A = (cache if first["dataset"] == "repeat" else cache_t)["pattern", 1][first["sequence"], 3]
    assert torch.allclose(torch.tensor(pats["weight"].to_numpy().copy()),
                          A[pats["query_pos"].to_numpy(), pats["key_pos"].to_numpy()])


def test_repeat_targets_and_errors():
    b, q, p = repeat_targets(torch.tensor([[7, 1, 2, 1, 2, 2]]))
    assert q.tolist() == [3, 4] and p.tolist() == [1, 2]  # 5: its copy at 4 is adjacent
    with pytest.raises(ValueError, match="not among the datasets"):
        head_scores(_model(), _data(), ("nope",))
