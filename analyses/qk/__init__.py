"""Exact QK decomposition of one head's pre-softmax attention scores (docs/METHODS.md §8).

With each position's normalisation scale frozen, the residual stream read by a head is a sum of
upstream components, so its score s(i, j) splits exactly into a components x components matrix
of bilinear terms (query-side component a, key-side component b).

    from analyses.qk import QKConfig, decompose_qk, qk_table
    res = decompose_qk(loaded, tokens, QKConfig(layer=1, head=2, pairs="induction"))
    table = qk_table(res)            # q_component, k_component, mean over the (query, key) pairs
"""

from analyses.qk.decompose import QKConfig, QKResult, decompose_qk
from analyses.qk.pairs import PAIR_RULES, QKPairs, select_pairs
from analyses.qk.table import qk_summary, qk_table, top_terms

__all__ = ["PAIR_RULES", "QKConfig", "QKPairs", "QKResult", "decompose_qk", "qk_summary",
           "qk_table", "select_pairs", "top_terms"]
