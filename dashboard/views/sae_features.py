"""SAE features page: ONE choice of attention SAE (with the run describing it) for the whole
page; type a prompt -> its features per token (through ``saes.encode``); then one feature's
top examples (full contexts, the token coloured by its activation), examples from
activation-quantile bands, density and histogram, DFA by head and logit effects.
``?feature=N`` in the address opens feature N (every feature id in the app links here)."""

from __future__ import annotations

import streamlit as st

from analyses.figures import saes as sf
from analyses.figures.heatmap import source_dfa_figure
from dashboard import howto, live, state
from dashboard.charts import show
from dashboard.feature_view import bands_html, examples_html, tokens_html
from dashboard.links import (
    FEATURE_PARAM,
    feature_link_column,
    wanted_feature,
    with_feature_links,
)
from dashboard.sae_choice import sae_choices
from probes.models import ModelNotAvailable

st.title("SAE features")
st.caption("Attention-output SAEs on hook_z (all heads of a layer concatenated, Kissane et al. "
           "2024), so each feature splits exactly into per-head contributions (DFA).")

choices = sae_choices()
if not choices:
    st.info("No attention SAE is shipped in data/saes or saved in a run, and no run holds SAE "
            "feature tables. Train one with:")
    st.code(howto.SAE_TRAIN, language="bash")
    st.caption(f"For SmolLM2 (no SAE is shipped for it):\n\n`{howto.SMOLLM2_SAE}`")
    st.stop()
selected = state.selected_run()
index = next((i for i, c in enumerate(choices) if selected and c.tables_run == selected), 0)
pick = st.selectbox("SAE (every section of this page uses it)", range(len(choices)),
                    index=index, format_func=lambda i: choices[i].label, key="sae_pick")
choice = choices[pick]
if choice.tables_run:
    state.select_run(choice.tables_run)

st.header("Features per token for your prompt")
if choice.path is None:
    st.caption("This SAE is not on disk here, so prompts cannot be encoded with it.")
else:
    with st.form("sae_form"):
        prompt = st.text_input("Prompt", value=live.default_prompt(str(choice.model)))
        top_n = st.slider("Features per token", 1, 10, 5)
        submitted = st.form_submit_button("Encode")
    if submitted:
        st.session_state["sae_live"] = (str(choice.model), choice.path, choice.layer, prompt,
                                        top_n)
    live_args = st.session_state.get("sae_live")
    if live_args is not None and live_args[1] == choice.path:
        try:
            feats = live.sae_features(*live_args)
        except (ModelNotAvailable, ValueError, FileNotFoundError) as exc:
            st.warning(f"Cannot encode this prompt: {exc}")
        else:
            impl = feats["impl"].iloc[0] if len(feats) else "n/a"
            st.caption(f"{feats['pos'].nunique()} tokens with active features; encode path: "
                       f"**{impl}**. A feature id opens that feature.")
            st.dataframe(with_feature_links(feats.drop(columns="impl")), hide_index=True,
                         width="stretch", column_config={"feature": feature_link_column()})
    else:
        st.caption("Type a prompt and press *Encode* (nothing runs on page load).")

def prompt_view(feature: int) -> None:
    """The feature on the prompt encoded above: tokens coloured, DFA by head and source."""
    live_args = st.session_state.get("sae_live")
    if live_args is None or live_args[1] != choice.path:
        st.caption("Encode a prompt above to see this feature's activation on each of its "
                   "tokens and its DFA by head and source position.")
        return
    model_name, path, layer, text, _ = live_args
    try:
        fp = live.feature_on_prompt(model_name, path, layer, text, feature)
    except (ModelNotAvailable, ValueError, FileNotFoundError) as exc:
        st.warning(f"Cannot attribute this feature on the prompt: {exc}")
        return
    st.subheader(f"Feature {feature} on your prompt")
    st.html(tokens_html(fp.str_tokens, fp.acts))
    show(source_dfa_figure(fp.by_source, fp.str_tokens, layer, fp.query_pos, feature),
         key="sae_source_dfa")
    st.caption(f"Exact split of the pre-activation at token {fp.query_pos}: sum of the cells "
               f"+ per-head b_dec terms ({fp.offset.sum():.3g}) + b_enc ({fp.bias:.3g}); "
               f"encode path: {fp.impl}.")


st.header("Feature")
run = None
if choice.tables_run is None:
    st.info("No completed run holds the feature tables of this SAE (`attnlab sae features` "
            "writes them). Write them with:")
    st.code(f"attnlab sae features --model {choice.model} --layer {choice.layer} "
            f"--sae {choice.path}", language="bash")
    if "sae_live" in st.session_state:
        prompt_view(int(st.number_input("Feature", 0, None, wanted_feature() or 0,
                                        key="sae_feature_id")))
else:
    run = state.run_of(choice.tables_run)
examples = state.section(run, "sae_feature_examples")
if examples is not None:
    ranking = sf.feature_ranking(examples.df).set_index("feature")
    feats = [int(f) for f in ranking.index]
    wanted = wanted_feature()
    feature = st.selectbox(
        "Feature (strongest first)", feats, index=feats.index(wanted) if wanted in feats else 0,
        format_func=lambda f: f"{f}  (max {ranking.at[f, 'max_activation']:.3g})",
        key="sae_feature_pick")
    st.query_params[FEATURE_PARAM] = str(feature)

    hist = state.section(run, "sae_feature_hist")
    scanned = state.run_config(run.run_id).get("tokens")
    st.subheader("Top examples")
    ex = examples.df[examples.df["feature"] == feature].sort_values("rank")
    top = float(ex["activation"].max()) if len(ex) else 1.0
    st.html(examples_html(ex, top))
    bands = state.section(run, "sae_feature_bands") if "sae_feature_bands" in run.tables \
        else None
    if bands is None:
        st.caption("This run predates activation-quantile bands; `attnlab sae features` "
                   "writes them.")
    else:
        st.subheader("Examples by activation band")
        st.html(bands_html(bands.df[bands.df["feature"] == feature], top))
    prompt_view(feature)
    left, right = st.columns(2)
    with left:
        if hist is not None:
            part = hist.df[hist.df["feature"] == feature]
            n_active = int(part["count"].sum())
            if scanned:
                st.metric("Density (share of scanned tokens where it fires)",
                          f"{n_active / float(scanned):.3%}",
                          help=f"{n_active} of {int(scanned)} tokens scanned by the run")
            show(sf.feature_histogram_figure(hist.df, feature), key="sae_hist")
    with right:
        effects = state.section(run, "sae_logit_effects", allow_empty=True)
        if effects is not None and effects.df.empty:
            st.caption("No logit effects: the model is an encoder (MiniLM has no unembedding).")
        elif effects is not None:
            show(sf.logit_effects_figure(effects.df, feature), key="sae_logits")
            st.caption("Key: **(p)** promoted, the feature's decoder direction raises the token's "
                       "logit (through W_O and the unembedding, direct path only); **(s)** "
                       "suppressed, it lowers it.")
    heads = state.section(run, "sae_feature_heads")
    if heads is not None:
        show(sf.feature_heads_figure(heads.df, feature), key="sae_heads")

    st.header("Heads")
    summary = state.section(run, "sae_head_summary")
    if summary is not None:
        stats = sorted(summary.df["stat"].unique())
        stat = st.selectbox("Head statistic", stats, key="sae_head_stat",
                            index=stats.index("n_families") if "n_families" in stats else 0)
        st.caption("n_features: features the head drives (its DFA share >= 0.5); n_families: "
                   "unrelated families among them (clustered by the cosine of what the head "
                   "writes for each, its slice of the decoder rows), the head's "
                   "polysemanticity; effective_features: exp(entropy) of its contribution mass "
                   "over all features.")
        show(sf.head_summary_heatmap(summary.df, stat), key="sae_head_summary")
    driven = state.section(run, "sae_head_features", allow_empty=True)
    if driven is not None and not driven.df.empty:
        with st.expander("features each head drives (DFA share >= 0.5)"):
            st.dataframe(with_feature_links(driven.df), hide_index=True, width="stretch",
                         column_config={"feature": feature_link_column()})
    if "sae_eval" not in run.tables and choice.path is not None:
        st.caption(f"Run `{run.run_id}` has no **sae_eval** table; `attnlab sae eval --model "
                   f"{choice.model} --layer {choice.layer} --sae {choice.path}` writes it.")
    evals = state.section(run, "sae_eval") if "sae_eval" in run.tables else None
    if evals is not None:
        st.subheader("SAE quality")
        st.dataframe(evals.df.pivot_table(index=["model", "layer", "sae"], columns="metric",
                                          values="value").reset_index(),
                     hide_index=True, width="stretch")
