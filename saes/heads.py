"""Head-by-head view of an attention SAE (Kissane et al. 2024, their per-head study).

From the per-feature DFA table (`saes.features.dfa_heads`: feature, head, value, share,
n_active), for each head:

- the features it *drives*: those whose DFA share from this head is >= `drive_share`
  (the head supplies most of the feature's pre-activation on the tokens where it fires),
  ranked by contribution mass value * n_active;
- polysemanticity = the number of *unrelated feature families* among them: the driven
  features are clustered by what this head writes for them, the cosine similarity of their
  decoder rows' head slices W_dec[f, h-slice] (average linkage; features whose mean
  similarity is below `family_similarity` are different families);
- effective_features = exp(entropy) of the head's contribution mass over all features (how
  many features its output is spread over, family-blind).

    summary, driven = head_summary(dfa_heads_df, sae, layer)
    summary: layer, head, stat (n_features | n_families | effective_features), value
    driven:  layer, head, rank, feature, share, value, n_active, family
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def families(directions: np.ndarray, min_similarity: float) -> np.ndarray:
    """Cluster labels of rows of `directions` (feature, d_head) by cosine, average linkage."""
    n = directions.shape[0]
    if n <= 1:
        return np.zeros(n, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    unit = directions / np.maximum(norms, 1e-12)
    clus = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average",
        distance_threshold=1.0 - min_similarity,
    )
    return clus.fit_predict(unit)


def effective_count(mass: np.ndarray) -> float:
    """exp(entropy) of a non-negative mass vector (0 if it is all zero)."""
    total = mass.sum()
    if total <= 0:
        return 0.0
    p = mass[mass > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def head_summary(
    dfa: pd.DataFrame, sae, layer: int, drive_share: float = 0.5, family_similarity: float = 0.3
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, driven) tables for one layer; see the module docstring."""
    if not 0 < drive_share <= 1 or not -1 <= family_similarity <= 1:
        raise ValueError("drive_share must lie in (0, 1] and family_similarity in [-1, 1]")
    heads = sorted(dfa["head"].unique())
    n_heads = int(dfa["head"].max()) + 1 if len(dfa) else 0
    W = sae.W_dec.detach().float().cpu()
    summary, driven = [], []
    for h in heads:
        rows = dfa[dfa["head"] == h]
        mass = (rows.value.clip(lower=0) * rows.n_active).to_numpy()
        mine = rows[(rows.share >= drive_share) & (rows.n_active > 0)].copy()
        mine["mass"] = mine.value * mine.n_active
        mine = mine.sort_values("mass", ascending=False, kind="stable")
        feats = torch.tensor(mine.feature.to_numpy(), dtype=torch.long)
        # (feature, d_head): head h's slice of each driven feature's decoder row
        sl = W[feats].reshape(len(feats), n_heads, -1)[:, h] if len(feats) else W[:0]
        mine["family"] = families(sl.numpy(), family_similarity)
        mine["rank"] = np.arange(len(mine))
        mine["layer"], mine["head"] = int(layer), int(h)
        driven.append(mine[["layer", "head", "rank", "feature", "share", "value", "n_active",
                            "family"]])
        for stat, value in (("n_features", len(mine)),
                            ("n_families", int(mine.family.nunique())),
                            ("effective_features", effective_count(mass))):
            summary.append({"layer": int(layer), "head": int(h), "stat": stat,
                            "value": float(value)})
    driven_df = pd.concat(driven, ignore_index=True) if driven else pd.DataFrame()
    return pd.DataFrame(summary), driven_df
