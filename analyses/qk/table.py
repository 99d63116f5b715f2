"""Tidy tables of a QK decomposition: one row per (query component, key component) term.

``qk_terms`` rows hold the mean and standard deviation of a term over the pairs; terms that
are zero for every pair (an SAE feature never active on that side) are left out. ``qk_summary``
holds, per head, the pair count, the mean actual score and the largest |sum of terms - score|.
"""

from __future__ import annotations

import pandas as pd

from analyses.qk.decompose import QKResult


def qk_table(res: QKResult, **meta) -> pd.DataFrame:
    """The ``qk_terms`` table of one result; ``meta`` (model=, task=) become leading columns."""
    nz = res.nonzero.nonzero().tolist()
    rows = [{
        "layer": res.config.layer, "head": res.config.head, "pairs": res.config.pairs,
        "q_component": res.q_labels[a], "q_kind": res.q_kinds[a], "q_layer": res.q_layers[a],
        "k_component": res.k_labels[b], "k_kind": res.k_kinds[b], "k_layer": res.k_layers[b],
        "mean": float(res.mean[a, b]), "std": float(res.std[a, b]),
    } for a, b in nz]
    df = pd.DataFrame(rows)
    for i, (key, value) in enumerate(meta.items()):
        df.insert(i, key, value)
    return df


def qk_summary(res: QKResult, **meta) -> pd.DataFrame:
    """One ``qk_summary`` row: pairs, mean score, mean sum of terms, largest error."""
    row = {**meta, "layer": res.config.layer, "head": res.config.head,
           "pairs": res.config.pairs, "n_pairs": len(res.score),
           "mean_score": float(res.score.mean()), "mean_term_sum": float(res.term_sum.mean()),
           "max_abs_error": res.max_error}
    return pd.DataFrame([row])


def top_terms(table: pd.DataFrame, n: int = 10, by: str = "mean") -> pd.DataFrame:
    """The ``n`` largest terms (by ``mean``, or by ``abs`` = |mean|), largest first."""
    if by not in ("mean", "abs"):
        raise ValueError(f"by must be 'mean' or 'abs', got {by!r}")
    key = table["mean"].abs() if by == "abs" else table["mean"]
    return table.loc[key.sort_values(ascending=False).index[:n]]


def side_totals(table: pd.DataFrame, side: str) -> pd.Series:
    """Mean score carried by each component of one side (``q`` or ``k``), summed over the other
    side, largest first: which key-side (K-composition) or query-side parts drive the head."""
    if side not in ("q", "k"):
        raise ValueError(f"side must be 'q' or 'k', got {side!r}")
    return table.groupby(f"{side}_component")["mean"].sum().sort_values(ascending=False)
