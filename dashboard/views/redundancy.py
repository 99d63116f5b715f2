"""Redundancy page: importance scores (He et al. 2024), performance vs dropped components, measured
speedup, head importance; figures from ``analyses.figures.redundancy``."""

from __future__ import annotations

import streamlit as st

from analyses.figures import redundancy as rf
from dashboard import readers, state
from dashboard.charts import show
from data.store import StoreError

st.title("Redundancy")
st.caption("Importance S = 1 - mean cos(X, X + sublayer(LN(X))) over calibration tokens; "
           "low S = redundant (He et al. 2024, 'What Matters in Transformers'). Dropped components "
           "are skipped, so the speedup is measured, not estimated.")


def _pick_definition(df) -> str:
    """The score definition to show (a run may hold 'unit' and 'residual_sum' scores)."""
    options = sorted(df["definition"].unique()) if "definition" in df.columns else ["unit"]
    return st.selectbox("Score definition", options, key="redundancy_definition",
                        index=options.index("unit") if "unit" in options else 0)


TABLES = ["redundancy", "drop_curve", "speedup", "head_importance", "head_importance_corr"]
run = state.page_run(TABLES, key="redundancy_run")
scores = state.section(run, "redundancy") if run is not None else None
if scores is not None:
    run_id, df = scores.run_id, scores.df
    definition = _pick_definition(df)
    left, right = st.columns(2)
    show(rf.importance_bars(df, definition), key="importance_bars", where=left)
    show(rf.importance_heatmap(df, definition), key="importance_heatmap", where=right)
    try:
        comparison = readers.manifest(run_id).get("he_comparison")
    except StoreError:
        comparison = None
    if isinstance(comparison, dict) and comparison.get("verdict"):
        st.info(f"**Against He et al.:** {comparison['verdict']}")

st.header("Performance vs dropped components")
curve = state.section(run, "drop_curve")
if curve is not None:
    metrics = sorted(curve.df["metric"].unique())
    metric = st.selectbox("Metric", metrics, key="drop_metric")
    show(rf.drop_curve_figure(curve.df, metric), key="drop_curve")
speed = state.section(run, "speedup")
if speed is not None:
    show(rf.speedup_figure(speed.df), key="speedup")
    st.caption("Log speedup axis, so a point with every block dropped (a model that computes "
               "nothing) does not flatten the others; error bars span the ratio of median and "
               "of fastest repeats.")
    with st.expander("timings"):
        st.dataframe(speed.df, hide_index=True, width="stretch")

st.header("Head importance")
heads = state.section(run, "head_importance")
if heads is not None:
    c1, c2 = st.columns(2)
    tasks = sorted(heads.df["task"].unique())
    task = c1.selectbox("Task", tasks, key="head_task")
    methods = sorted(heads.df[heads.df["task"] == task]["method"].unique())
    method = c2.selectbox("Method", methods, key="head_method",
                          index=methods.index("zero") if "zero" in methods else 0)
    show(rf.head_importance_heatmap(heads.df, task, method), key="head_imp")
corr = state.section(run, "head_importance_corr", allow_empty=True)
if corr is not None and not corr.df.empty:
    st.caption("Rank correlation between ablation and first-order (Taylor) importance:")
    st.dataframe(corr.df, hide_index=True, width="stretch")
