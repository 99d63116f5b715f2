"""Figures of the head explorer (``head_scores``, ``head_top_patterns``; probes.head_scores).

``head_score_heatmap``: one statistic as the layer x head grid (analyses.figures.heatmap);
``top_pattern_figure``: a head's attention pattern on one of its top prompts, query x key,
tokens on the axes.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analyses.figures.checks import require_columns
from analyses.figures.heatmap import grid_heatmap, layer_head_heatmap, token_labels
from data.notation import head_label

#: what each head_scores statistic is, for titles and colour bars
STAT_TITLES = {
    "prev_token": "previous-token score (mean attention to i - 1)",
    "induction": "induction score (attention to the token after the earlier copy)",
    "duplicate": "duplicate-token score (attention to the earlier copy)",
    "entropy": "mean attention entropy (nats)",
    "sink_score": "sink score (mean attention to position 0)",
    "sink_rate": "sink rate (share of queries attending > epsilon to position 0)",
    "output_norm": "mean output norm ||z_h W_O^h||",
    "ablation_importance": "ablation importance (metric drop, from a redundancy run)",
}


def head_scores_wide(scores: pd.DataFrame) -> pd.DataFrame:
    """The head_scores table as one row per head (columns: the statistics), with labels."""
    require_columns(scores, ["layer", "head", "stat", "value"], "head_scores_wide")
    wide = scores.pivot_table(index=["layer", "head"], columns="stat", values="value")
    wide = wide.drop(columns=[c for c in ("n_queries", "n_repeat_queries") if c in wide])
    wide = wide.reset_index()
    wide.insert(0, "label", [head_label(la, h) for la, h in zip(wide["layer"], wide["head"])])
    wide.columns.name = None
    return wide


def head_score_heatmap(scores: pd.DataFrame, stat: str) -> go.Figure:
    """Layer x head heatmap of statistic ``stat`` of a long (layer, head, stat, value) table."""
    rows = scores[scores["stat"] == stat]
    if rows.empty:
        raise ValueError(f"no {stat!r} rows in the head scores; have {sorted(scores['stat'])}")
    return layer_head_heatmap(rows, "value", title=STAT_TITLES.get(stat, stat),
                              colorbar_title=stat, diverging=stat == "ablation_importance",
                              what="head_score_heatmap")


def top_pattern_figure(patterns: pd.DataFrame, sequence: pd.Series) -> go.Figure:
    """A head's attention pattern on one top prompt (a head_top_sequences row ``sequence``)."""
    require_columns(patterns, ["layer", "head", "rank", "query_pos", "key_pos", "weight"],
                    "top_pattern_figure")
    layer, head, rank = (int(sequence[c]) for c in ("layer", "head", "rank"))
    rows = patterns[(patterns["layer"] == layer) & (patterns["head"] == head)
                    & (patterns["rank"] == rank)]
    labels = token_labels(json.loads(sequence["tokens"]))
    grid = np.zeros((len(labels), len(labels)))
    grid[rows["query_pos"].to_numpy(), rows["key_pos"].to_numpy()] = rows["weight"]
    title = (f"{head_label(layer, head)} on {sequence['dataset']} prompt "
             f"#{int(sequence['sequence'])}: max output norm {sequence['norm']:.2f} at "
             f"position {int(sequence['position'])}")
    return grid_heatmap(pd.DataFrame(grid, index=labels, columns=labels), title=title,
                        x_title="key", y_title="query", value_title="attention",
                        colorscale="Blues", zrange=(0.0, 1.0))
