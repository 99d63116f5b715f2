"""SAE features page: pick an attention SAE, type a prompt -> its features per token (through
``saes.encode``); then one feature's top examples, histogram, DFA by head and logit effects."""

from __future__ import annotations

import streamlit as st

from analyses.figures import saes as sf
from dashboard import howto, live, readers, state
from probes.models import ModelNotAvailable

st.title("SAE features")
st.caption("Attention-output SAEs on hook_z (all heads of a layer concatenated, Kissane et al. "
           "2024), so each feature splits exactly into per-head contributions (DFA).")

st.header("Features per token for your prompt")
saes = readers.list_saes()
usable = saes.dropna(subset=["layer"]) if not saes.empty else saes
if usable.empty:
    st.info("No attention SAE is shipped in data/saes or saved in a run. Train one with:")
    st.code(howto.SAE_TRAIN, language="bash")
else:
    labels = {r.path: f"{r.model} · layer {int(r.layer)} · {r.architecture} · d_sae {r.d_sae} "
                      f"· {r.source}" for r in usable.itertuples()}
    choice = st.selectbox("SAE", list(labels), format_func=labels.get, key="sae_pick")
    row = usable.set_index("path", drop=False).loc[choice]
    with st.form("sae_form"):
        prompt = st.text_input("Prompt", value=live.default_prompt(str(row.model)))
        top_n = st.slider("Features per token", 1, 10, 5)
        submitted = st.form_submit_button("Encode")
    if submitted:
        st.session_state["sae_live"] = (str(row.model), row.path, int(row.layer), prompt, top_n)
    if "sae_live" in st.session_state:
        model_name, path, layer, text, n = st.session_state["sae_live"]
        try:
            feats = live.sae_features(model_name, path, layer, text, n)
        except (ModelNotAvailable, ValueError, FileNotFoundError) as exc:
            st.warning(f"Cannot encode this prompt: {exc}")
        else:
            impl = feats["impl"].iloc[0] if len(feats) else "n/a"
            st.caption(f"{feats['pos'].nunique()} tokens with active features; encode path: "
                       f"**{impl}**")
            st.dataframe(feats.drop(columns="impl"), hide_index=True, width="stretch")
            st.session_state.setdefault("sae_feature_id", int(feats["feature"].iloc[0])
                                        if len(feats) else 0)
    else:
        st.caption("Type a prompt and press *Encode* (nothing runs on page load).")

st.header("Feature")
examples = state.load("sae_feature_examples", key="sae_tables_run",
                      label="Run with SAE feature tables")
if examples is not None:
    run_id = examples.run_id
    ranking = sf.feature_ranking(examples.df).set_index("feature")
    feats = [int(f) for f in ranking.index]
    wanted = st.session_state.get("sae_feature_id")
    feature = st.selectbox(
        "Feature (strongest first)", feats, index=feats.index(wanted) if wanted in feats else 0,
        format_func=lambda f: f"{f}  (max {ranking.at[f, 'max_activation']:.3g})",
        key="sae_feature_pick")
    left, right = st.columns(2)
    with left:
        st.subheader("Top examples")
        ex = examples.df[examples.df["feature"] == feature].sort_values("rank")
        st.dataframe(ex[["rank", "activation", "token", "context"]], hide_index=True,
                     width="stretch")
    with right:
        hist = state.read_optional(run_id, "sae_feature_hist")
        if hist is not None:
            st.plotly_chart(sf.feature_histogram_figure(hist.df, feature), key="sae_hist")
    heads = state.read_optional(run_id, "sae_feature_heads")
    if heads is not None:
        st.plotly_chart(sf.feature_heads_figure(heads.df, feature), key="sae_heads")
    effects = state.read_optional(run_id, "sae_logit_effects", allow_empty=True)
    if effects is not None and effects.df.empty:
        st.caption("No logit effects: the model is an encoder (MiniLM has no unembedding).")
    elif effects is not None:
        st.plotly_chart(sf.logit_effects_figure(effects.df, feature), key="sae_logits")

    st.header("Heads")
    summary = state.read_optional(run_id, "sae_head_summary")
    if summary is not None:
        stats = sorted(summary.df["stat"].unique())
        stat = st.selectbox("Head statistic", stats, key="sae_head_stat",
                            index=stats.index("n_families") if "n_families" in stats else 0)
        st.plotly_chart(sf.head_summary_heatmap(summary.df, stat), key="sae_head_summary")
    driven = state.read_optional(run_id, "sae_head_features", allow_empty=True)
    if driven is not None and not driven.df.empty:
        with st.expander("features each head drives (DFA share >= 0.5)"):
            st.dataframe(driven.df, hide_index=True, width="stretch")
    evals = state.read_optional(run_id, "sae_eval")
    if evals is not None:
        st.subheader("SAE quality")
        st.dataframe(evals.df.pivot_table(index=["model", "layer", "sae"], columns="metric",
                                          values="value").reset_index(),
                     hide_index=True, width="stretch")
