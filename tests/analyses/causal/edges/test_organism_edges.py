"""On the shipped organism: EAP-IG on the key-corrupted induction task finds K-composition.

The previous-token, current-token (layer 0) and induction heads (layer 1) are found from
attention patterns alone (tests/analyses/causal/test_patching_organism.py). Under the key corruption
(analyses.causal.edges.tasks) the only token that differs is s[k-1] of the first copy, read
at position k by the previous-token heads: so every previous-token -> induction-key edge must
outrank every current-token -> induction-key edge, and the induction heads' edges to the
logits must outrank every layer-0 head's edge to the logits.
"""

from __future__ import annotations

from analyses.causal.edges.eap import EAPConfig, edge_attribution, scores_table
from analyses.causal.edges.faithfulness import faithfulness_curve
from analyses.causal.edges.sources import task_chunks
from analyses.causal.edges.tasks import load_edge_task
from tests.analyses.causal.test_patching_organism import (
    current_token_scores,
    induction_scores,
    previous_token_scores,
)


def test_eap_ig_ranks_previous_token_to_induction_key_edges_first(organism):
    model = organism.model
    ds = load_edge_task("organism", "induction-keys", 32, 0)
    bos = int(ds.clean_tokens[0, 0])
    ind = (induction_scores(model, bos) > 0.3).nonzero().tolist()
    cur = (current_token_scores(model, bos)[0] > 0.5).nonzero().flatten().tolist()
    prev = (previous_token_scores(model, bos)[0] > 0.5).nonzero().flatten().tolist()
    assert ind and all(layer == 1 for layer, _ in ind) and prev
    res = edge_attribution(model, task_chunks(ds, 32), EAPConfig("eap-ig", steps=5))
    t = scores_table(res).set_index(["source", "target"]).score
    keys = [f"L1H{h}(k)" for _, h in ind]
    prev_k = min(t[(f"L0H{p}", k)] for p in prev for k in keys)
    cur_k = max(t[(f"L0H{c}", k)] for c in cur for k in keys)
    assert prev_k > cur_k > -prev_k
    ind_logits = min(t[(f"L1H{h}", "logits")] for _, h in ind)
    l0_logits = max(t[(f"L0H{h}", "logits")] for h in range(model.cfg.n_heads))
    assert ind_logits > l0_logits
    curve = faithfulness_curve(model, res.graph, res.scores, task_chunks(ds, 32),
                               budgets=(1.0,), rankings=("signed",)).table
    assert abs(curve.faithfulness.iloc[0]) < 1e-4 and abs(curve.faithfulness.iloc[1] - 1) < 1e-4
