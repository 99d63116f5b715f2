"""Circuits page: patching heatmaps, attribution vs exact, path-patching roles, ablation
(selective impairment) tables and the circuit reports; figures from ``analyses.figures.causal``."""

from __future__ import annotations

import streamlit as st
import streamlit.components.v1 as components

from analyses.figures import causal as figures
from dashboard import howto, readers, state
from dashboard.charts import show
from dashboard.links import feature_link_column, with_feature_links
from data.store import StoreError

st.title("Circuits")
st.caption("Activation patching (denoising: clean activation into the corrupted run; noising: "
           "the reverse), attribution patching (first-order estimate), path patching and "
           "ablations, on the task's logit difference (0 = corrupted, 1 = clean).")

@st.cache_data(show_spinner=False)
def _prompt_tokens(run_id: str, model: str | None, task: str):
    """The run's first clean prompt's tokens (``PromptTokens``) for the position axes, from the
    manifest's ``n``/``seed``; None when the run's model has no such task dataset."""
    from analyses.causal.task_sets import task_model
    from data.smollm2 import SmolLM2NotInstalled
    from data.task_tokens import clean_prompt_tokens

    try:
        config = readers.manifest(run_id).get("config") or {}
        return clean_prompt_tokens(task, int(config.get("n") or 8), int(config.get("seed") or 0),
                                   task_model(model or "organism"))
    except (StoreError, ValueError, SmolLM2NotInstalled):
        return None


TABLES = ["patching", "impairment", "circuit_roles", "circuit_sae_features"]
run = state.page_run(TABLES, key="circuits_run")

st.header("Patching")
patching = state.section(run, "patching") if run is not None else None
if patching is not None:
    df = patching.df
    tasks = sorted(df["task"].unique())
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task", tasks, key="circuit_task")
    d = df[df["task"] == task]
    components_ = sorted(d["component"].unique())
    comp = c2.selectbox("Component", components_, key="circuit_component",
                        index=components_.index("z") if "z" in components_ else 0)
    methods = sorted(d[d["component"] == comp]["method"].unique())
    method = c3.selectbox("Method", methods, key="circuit_method",
                          index=methods.index("denoising") if "denoising" in methods else 0)
    toks = _prompt_tokens(patching.run_id, patching.model, task)
    show(figures.patching_heatmap(d, comp, method, tokens=toks.tokens if toks else None,
                                  varying=toks.varying if toks else ()), key="patching_heatmap")
    for direction in ("denoising", "noising"):
        mine = d[d["component"] == comp]["method"]
        if (mine == direction).any() and (mine == f"attribution_{direction}").any():
            show(figures.attribution_scatter(d, comp, direction), key=f"attribution_{direction}")
    top = (d[(d["component"] == comp) & (d["method"] == method)]
           .sort_values("normalized_effect", key=abs, ascending=False).head(10))
    with st.expander("top components"):
        st.dataframe(top, hide_index=True, width="stretch")

st.header("Head roles (path patching)")
if run is not None:
    roles = state.section(run, "circuit_roles", allow_empty=True)
    if roles is not None and not roles.df.empty:
        st.dataframe(roles.df, hide_index=True, width="stretch")
    feats = state.section(run, "circuit_sae_features", allow_empty=True)
    if feats is not None and not feats.df.empty:
        st.subheader("SAE features of the top heads")
        st.dataframe(with_feature_links(feats.df), hide_index=True, width="stretch",
                     column_config={"feature": feature_link_column()})

st.header("Ablations: selective impairment")
impairment = state.section(run, "impairment") if run is not None else None
if impairment is not None:
    show(figures.ablation_table_figure(impairment.df), key="ablation")
    st.dataframe(impairment.df, hide_index=True, width="stretch")

st.header("Edge circuit (EAP / EAP-IG)")
from dashboard.views.circuit_graph import render as render_edge_circuit  # noqa: E402

render_edge_circuit(prefer=run.run_id if run is not None else None)

st.header("Report")
files = {}
if run is not None:
    try:
        files = {p.name: p for p in readers.artefacts(run.run_id)}
    except StoreError as exc:
        howto.show_store_error(exc)
if "report.html" in files:
    c1, c2 = st.columns(2)
    c1.download_button("report.html (self-contained, offline)",
                       data=files["report.html"].read_bytes(), file_name="report.html",
                       key=f"html_{run.run_id}")
    c2.caption(f"`{files['report.html']}`")
    if "report.md" in files:
        with st.expander("report.md", expanded=True):
            st.markdown(files["report.md"].read_text(encoding="utf-8"))
    if st.toggle("show the HTML report here", key=f"show_{run.run_id}"):
        components.html(files["report.html"].read_text(encoding="utf-8"), height=900,
                        scrolling=True)
elif run is not None:
    st.info(f"Run `{run.run_id}` ({run.model}) has no circuit report. Write one (HTML + "
            "Markdown) with:")
    st.code(howto.command_for("patching", run.model), language="bash")
