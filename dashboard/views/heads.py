"""Heads page (head explorer): dataset-wide scores of every head, a head's top prompts by output
norm with its attention pattern, and its exact QK decomposition; tables from ``attnlab heads``
(probes.head_scores, analyses.qk), figures from ``analyses.figures.heads`` / ``.qk``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analyses.figures import heads as hf
from analyses.figures.qk import qk_heatmap
from dashboard import readers, state
from dashboard.charts import show
from data.notation import head_label
from data.store import StoreError

COMMAND = "attnlab heads --model {model}"

st.title("Heads")
st.caption("Per-head scores over the model's task prompts: previous-token, induction and "
           "duplicate-token scores (induction task), mean entropy, sink score and rate, output "
           "norm; pick a head to see its top prompts and what drives its attention (exact QK "
           "decomposition, docs/METHODS.md §8).")


def _importance(model: str | None) -> tuple[pd.DataFrame | None, str | None]:
    """Mean-ablation importance per head (mean over tasks) from the newest redundancy run of
    ``model`` with a head_importance table; (None, None) when the store has none."""
    runs = readers.runs_with_table("head_importance")
    runs = runs[runs["model"] == model] if not runs.empty else runs
    if runs.empty:
        return None, None
    run_id = runs["run_id"].iloc[0]
    try:
        df = readers.read_table(run_id, "head_importance")
    except StoreError:
        return None, None
    method = "mean" if (df["method"] == "mean").any() else "zero"
    rows = df[df["method"] == method].groupby(["layer", "head"], as_index=False)["value"].mean()
    return rows.assign(stat="ablation_importance"), f"{run_id} ({method} ablation)"


def _qk_terms(run: state.PageRun, layer: int, head: int) -> pd.DataFrame | None:
    """The head's qk_terms rows: from the page's run, else the newest qk run of its model."""
    candidates = [run.run_id] if "qk_terms" in run.tables else []
    qk_runs = readers.runs_with_table("qk_terms")
    if not qk_runs.empty:
        candidates += list(qk_runs[qk_runs["model"] == run.model]["run_id"])
    for run_id in candidates:
        try:
            df = readers.read_table(run_id, "qk_terms")
        except StoreError:
            continue
        rows = df[(df["layer"] == layer) & (df["head"] == head)]
        if not rows.empty:
            st.caption(f"QK terms from run `{run_id}`, task {rows['task'].iloc[0]}.")
            return rows
    return None


if readers.runs_with_table("head_scores").empty:
    st.info("No completed run in the store holds the table **head_scores** (per-head scores of "
            "the head explorer). Produce it with the command below, then reload this page.")
    st.code(COMMAND.format(model="organism"), language="bash")
    st.stop()

run = state.page_run(["head_scores", "head_top_sequences", "head_top_patterns"],
                     key="heads_run")
scores = state.section(run, "head_scores")
if scores is not None:
    long = scores.df
    importance, source = _importance(run.model)
    if importance is not None:
        long = pd.concat([long, importance], ignore_index=True)
        st.caption(f"Ablation importance from run `{source}`, mean over its tasks.")
    wide = hf.head_scores_wide(long)
    stats = [c for c in hf.STAT_TITLES if c in wide.columns]
    stat = st.selectbox("Score", stats, key="heads_stat", format_func=hf.STAT_TITLES.get)
    show(hf.head_score_heatmap(long, stat), key="heads_heatmap")
    st.dataframe(wide.sort_values(stat, ascending=False), hide_index=True, width="stretch")

    labels = list(wide.sort_values(stat, ascending=False)["label"])
    chosen = st.selectbox("Head", labels, key="heads_head",
                          help="heads ordered by the chosen score, highest first")
    layer, head = (int(v) for v in wide.set_index("label").loc[chosen, ["layer", "head"]])

    st.header(f"{head_label(layer, head)}: top prompts by output norm")
    seqs = state.section(run, "head_top_sequences")
    pats = state.section(run, "head_top_patterns")
    if seqs is not None and pats is not None:
        mine = seqs.df[(seqs.df["layer"] == layer) & (seqs.df["head"] == head)]
        if mine.empty:
            st.caption("No top prompts were kept for this head (`--top-k 0`).")
        for _, row in mine.sort_values("rank").iterrows():
            show(hf.top_pattern_figure(pats.df, row), key=f"heads_pattern_{row['rank']}")

    st.header(f"{head_label(layer, head)}: QK decomposition")
    terms = _qk_terms(run, layer, head)
    if terms is None:
        st.caption(f"No QK decomposition of {head_label(layer, head)} in the store; "
                   "write one with:")
        st.code(f"attnlab qk --model {run.model} --layer {layer} --head {head} "
                "--task induction", language="bash")
    else:
        top = st.slider("Components per side", 4, 40, 12, key="heads_qk_top")
        show(qk_heatmap(terms, top=top), key="heads_qk")
        with st.expander("largest terms"):
            st.dataframe(terms.reindex(terms["mean"].abs().sort_values(ascending=False).index)
                         .head(30), hide_index=True, width="stretch")
