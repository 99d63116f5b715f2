"""Attention page: entropy per head (collapse flags, lower bound), head output norms,
attention sinks (sink score per head, sink rate per layer), all from ONE run chosen at the top,
and a live view of every head's attention pattern for a prompt typed here (the run's model)."""

from __future__ import annotations

import streamlit as st

from analyses.figures import probes as pf
from analyses.figures.heatmap import head_patterns_figure
from dashboard import live, state
from dashboard.charts import show
from data.notation import head_label
from probes.models import ModelNotAvailable

TABLES = ["entropy", "head_norms", "sinks", "sink_rate"]

st.title("Attention")
run = state.page_run(TABLES, key="attn_run")

st.header("Entropy per head")
st.caption("H = -Σ p log p over the keys each query may attend to; normalised by log(#keys). "
           "x = head in entropy collapse. The bound is Zhai et al. (2023), Thm 3.1.")
entropy = state.section(run, "entropy") if run is not None else None
if entropy is not None:
    stats = sorted(entropy.df["stat"].unique())
    default = "norm_mean" if "norm_mean" in stats else stats[0]
    hide = {"collapsed"}
    choices = [s for s in stats if s not in hide] or stats
    stat = st.selectbox("Statistic", choices, index=choices.index(default)
                        if default in choices else 0, key="attn_entropy_stat")
    show(pf.entropy_heatmap(entropy.df, stat=stat), key="entropy_heatmap")
    if {"mean", "bound_mean"} <= set(stats):
        show(pf.entropy_bound_figure(entropy.df), key="entropy_bound")
    by_stat = entropy.df.groupby("stat")["value"]
    m1, m2, m3 = st.columns(3)
    if "collapsed" in stats:
        m1.metric("Heads in entropy collapse", int((by_stat.get_group("collapsed") > 0).sum()))
    if "bound_violations" in stats:
        m2.metric("Queries below the bound", int(by_stat.get_group("bound_violations").sum()),
                  help="Must be 0: the bound is a theorem (Zhai et al. 2023, Thm 3.1).")
    if "norm_mean" in stats:
        m3.metric("Lowest normalised entropy", f"{by_stat.get_group('norm_mean').min():.3f}")

st.header("Head output norms")
norms = state.section(run, "head_norms") if run is not None else None
if norms is not None:
    norm_stats = sorted(norms.df["stat"].unique())
    nstat = st.selectbox("Norm statistic", norm_stats,
                         index=norm_stats.index("mean") if "mean" in norm_stats else 0,
                         key="attn_norm_stat")
    show(pf.head_norms_heatmap(norms.df, stat=nstat), key="head_norms")

st.header("Attention sinks")
st.caption("Sink score = a head's mean attention from its queries i > 0 to position 0 (BOS or "
           "[CLS]); o = sink head, score above the run's epsilon. Sink rate = the share of "
           "heads that are sink heads (Gu et al. 2024, epsilon 0.3).")
sinks = state.section(run, "sinks") if run is not None else None
if sinks is not None:
    rate = state.section(run, "sink_rate")
    epsilon = float(rate.df["epsilon"].iloc[0]) if rate is not None else None
    show(pf.sinks_heatmap(sinks.df, epsilon=epsilon), key="sinks_heatmap")
    if rate is not None:
        show(pf.sink_rate_figure(rate.df), key="sink_rate")
    scores = sinks.df[(sinks.df["stat"] == "sink_score") & (sinks.df["head"] >= 0)]
    s1, s2 = st.columns(2)
    if rate is not None and (rate.df["layer"] == -1).any():
        whole = rate.df[rate.df["layer"] == -1].iloc[0]
        s1.metric("Sink rate (all heads)", f"{whole['value']:.2f}",
                  help=f"{round(whole['value'] * whole['n_heads'])} of {int(whole['n_heads'])} "
                       f"heads put more than {whole['epsilon']:g} of their attention on "
                       "position 0.")
    if scores["value"].notna().any():
        top = scores.loc[scores["value"].idxmax()]
        s2.metric("Strongest sink head", head_label(top["layer"], top["head"]),
                  f"{top['value']:.2f} on position 0", delta_color="off")

st.header("Attention patterns for your prompt")
default_model = run.model if run is not None and run.model else "minilm"
with st.form("pattern_form"):
    model_name = st.text_input("Model", value=default_model,
                               help="the run's model by default: minilm, organism, smollm2, or "
                                    "a TransformerLens model name")
    prompt = st.text_input("Prompt", value=live.default_prompt(default_model))
    submitted = st.form_submit_button("Show attention")
if submitted:
    st.session_state["attn_live"] = (model_name.strip(), prompt)
if "attn_live" in st.session_state:
    name, text = st.session_state["attn_live"]
    try:
        result = live.attention_patterns(name, text)
    except (ModelNotAvailable, ValueError) as exc:
        st.warning(f"Cannot show attention for this prompt: {exc}")
    else:
        n_layers, n_heads = result.pattern.shape[:2]
        st.caption(f"{name}: {len(result.str_tokens)} tokens, {n_layers} layers x {n_heads} "
                   "heads. Hover a cell for its query and key tokens.")
        c1, c2 = st.columns(2)
        layer = int(c1.number_input("Layer", 0, n_layers - 1, 0, key="attn_layer"))
        head = int(c2.number_input("Head (enlarged below the grid)", 0, n_heads - 1, 0,
                                   key="attn_head"))
        show(head_patterns_figure(result.pattern[layer], result.str_tokens, layer),
             key="pattern_grid")
        frame = pf.pattern_frame(result.pattern[layer, head], result.str_tokens)
        show(pf.attention_pattern_figure(frame, title=f"{name}: {head_label(layer, head)}"),
             key="pattern")
else:
    st.caption("Type a prompt and press *Show attention*: the model runs once on it "
               "(nothing runs on page load).")
