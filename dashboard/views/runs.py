"""Runs page: every run in the store (model, command, date, status); pick one to inspect."""

from __future__ import annotations

import json

import streamlit as st

from dashboard import howto, readers, state
from data.store import StoreError

#: Page that shows each table, for the "open in" links of a run.
TABLE_PAGES = {
    **dict.fromkeys(["entropy", "head_norms", "sinks", "sink_rate"], "views/attention.py"),
    **dict.fromkeys(["massive", "massive_summary", "organism_dynamics"], "views/massive.py"),
    **dict.fromkeys(["sae_feature_examples", "sae_feature_hist", "sae_feature_heads",
                     "sae_logit_effects", "sae_head_summary", "sae_head_features", "sae_eval"],
                    "views/sae_features.py"),
    **dict.fromkeys(["redundancy", "drop_curve", "speedup", "head_importance",
                     "head_importance_corr"], "views/redundancy.py"),
    **dict.fromkeys(["patching", "impairment", "circuit_roles", "circuit_sae_features"],
                    "views/circuits.py"),
}

st.title("Runs")
root = str(readers.store().root)
runs = readers.list_runs()
if runs.empty:
    howto.show_empty_store(root)
    st.stop()

st.caption(f"{len(runs)} runs in `{root}`, newest first.")
cols = ["run_id", "model", "command", "started_at", "status", "tables"]
st.dataframe(runs[cols], hide_index=True, width="stretch")

ids = list(runs["run_id"])
current = state.selected_run()
run_id = st.selectbox("Inspect run", ids, index=ids.index(current) if current in ids else 0,
                      key="runs_pick", on_change=state.mark_picked)
state.select_run(run_id)
row = runs.set_index("run_id").loc[run_id]

if row["status"] == "corrupt":
    st.warning(f"Run `{run_id}` cannot be read: {row['error']}")
    st.stop()
if row["status"] != "complete":
    msg = f"Run `{run_id}` is **{row['status']}**"
    st.warning(msg + (f": {row['error']}" if isinstance(row["error"], str) else "") +
               ". Its tables may be incomplete; pages only offer completed runs.")

try:
    manifest = readers.manifest(run_id)
    files = readers.artefacts(run_id)
except StoreError as exc:
    howto.show_store_error(exc)
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Tables")
    tables = manifest.get("tables", [])
    if not tables:
        st.write("This run wrote no tables.")
    for name in tables:
        target = TABLE_PAGES.get(name)
        if target:
            st.page_link(target, label=f"{name} → open page", icon=":material/table_chart:")
        else:
            st.write(f"`{name}`")
    if files:
        st.subheader("Files")
        for path in files:
            st.download_button(f"{path.name}", data=path.read_bytes(), file_name=path.name,
                               key=f"dl_{path}")
with right:
    st.subheader("Manifest")
    summary = {k: manifest.get(k) for k in ("command", "model", "status", "started_at",
                                             "ended_at", "duration_s", "git_revision")}
    st.json(summary)
    with st.expander("config and versions"):
        st.code(json.dumps({"config": manifest.get("config"),
                            "versions": manifest.get("versions")}, indent=2, default=str),
                language="json")
