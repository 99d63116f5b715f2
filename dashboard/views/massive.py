"""Massive activations page: per-layer max/median, the table of massive values (token, dim),
and their emergence over the organism's training with the fitted curve.

The thresholds shown are the ones the chosen run used (its manifest), not fixed numbers:
``attnlab probe --massive-abs/--massive-ratio`` and the demo (ratio 100) change them."""

from __future__ import annotations

import streamlit as st

from analyses.figures import probes as pf
from dashboard import readers, state
from dashboard.charts import show
from dashboard.views.interventions import show_interventions
from data.store import StoreError
from probes.massive import MassiveConfig

SUN = MassiveConfig()  # Sun et al. 2024's thresholds, the probe's defaults


def thresholds_text(abs_threshold: float, ratio: float) -> str:
    return f"|value| > {abs_threshold:g} and > {ratio:g}x the median"


def run_thresholds(run_id: str) -> tuple[float, float] | None:
    try:
        return readers.massive_thresholds(run_id)
    except StoreError:
        return None


st.title("Massive activations")
st.caption("Residual-stream scalars whose |value| passes both thresholds of the run: an "
           "absolute one and a multiple of the median |value| of their hidden state (Sun et al. "
           f"2024: {thresholds_text(SUN.abs_threshold, SUN.ratio_threshold)}); BERT-style "
           "models are read before the LayerNorm.")

run = state.page_run(["massive_summary", "massive", "organism_dynamics"], key="massive_run")

st.header("Per-layer magnitudes")
summary = state.section(run, "massive_summary")
if summary is not None:
    show(pf.massive_summary_figure(summary.df), key="massive_summary")
    ratio = summary.df[summary.df["stat"] == "ratio"]
    if not ratio.empty:
        top = ratio.loc[ratio["value"].idxmax()]
        st.metric("Largest top-1 / median ratio", f"{top['value']:.0f}x",
                  help=f"layer {int(top['layer'])}")

st.header("Massive values")
massive = state.section(run, "massive", allow_empty=True)
if massive is not None:
    recorded = run_thresholds(massive.run_id)
    used = recorded or (SUN.abs_threshold, SUN.ratio_threshold)
    st.caption(f"Thresholds of this run: {thresholds_text(*used)}." if recorded else
               "This run's manifest does not record its thresholds; the probe's defaults "
               f"({thresholds_text(*used)}) are assumed.")
if massive is not None and massive.df.empty:
    st.info(f"No residual-stream value passed both thresholds ({thresholds_text(*used)}) in "
            "this run; the per-layer top-1/median ratio above shows how close the model comes "
            "(MiniLM: ~570x). Lower the ratio threshold:")
    st.code(f"attnlab probe --model {massive.model or 'minilm'} --massive-ratio "
            f"{used[1] / 5:g}", language="bash")
elif massive is not None:
    show(pf.massive_dims_figure(massive.df), key="massive_dims")
    st.subheader("Which dims and tokens carry them")
    st.dataframe(pf.massive_top_table(massive.df), hide_index=True, width="stretch")
    with st.expander(f"all {len(massive.df)} massive values"):
        cols = ["layer", "position", "token", "dim", "value", "ratio"]
        st.dataframe(massive.df[cols].sort_values(["layer", "position"]), hide_index=True,
                     width="stretch")

st.header("Emergence over training (organism)")
st.caption("r(t) = max|h| / median|h| of each layer's residual output at each training "
           "checkpoint, with the fitted f(t) = A·exp(-λx)·log(x) + K, x = γt + t0 "
           "('Hidden Dynamics of Massive Activations', Eq. 9).")
sources = {}
if run is not None and run.model == "organism":  # a page never mixes models
    if "organism_dynamics" in run.tables:
        sources[f"run {run.run_id}"] = run.run_id
    shipped = readers.organism_dynamics()
    if shipped is not None:
        sources["shipped organism checkpoints (data/organism)"] = None
if run is not None and not sources:
    st.caption(f"Training checkpoints exist only for the organism, which attnlab trains; run "
               f"`{run.run_id}` is a {run.model} run. Pick an organism run above to see them.")
elif sources:
    source = st.selectbox("Dynamics", list(sources), key="emergence_source")
    dyn = (shipped if sources[source] is None
           else getattr(state.read(sources[source], "organism_dynamics"), "df", None))
    if dyn is not None:
        observed = dyn[dyn["metric"] == "massive_ratio"][["step", "layer", "value"]]
        fit = None
        if st.button("Fit the emergence curve", key="emergence_fit_button",
                     help="probes.emergence.fit_emergence per layer (scipy curve_fit, several "
                     "starts); can take a minute on a busy CPU, then it is cached."):
            st.session_state["emergence_fitted"] = source
        if st.session_state.get("emergence_fitted") == source:
            try:
                fit = readers.emergence_fit(dyn)
            except ValueError as exc:
                st.warning(f"The emergence curve cannot be fitted to these checkpoints: {exc}")
        show(pf.emergence_figure(observed, None if fit is None else fit.curve), key="emergence")
        if fit is not None:
            st.dataframe(fit.params, hide_index=True, width="stretch")
            st.caption(f"mean R² over layers: {fit.params['r2'].mean():.3f} (the paper reports "
                       "0.984 over Pythia layers); peak_step = argmax of the fitted curve.")

show_interventions(None if run is None else run.model)  # causal tests, same model
