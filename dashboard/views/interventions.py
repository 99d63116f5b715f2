"""Panel of the Massive activations page: the causal tests (``attnlab massive ablate | sinks``).

Not a page of its own: :func:`show_interventions` draws two sections into the page that calls
it -- the massive-activation ablation (zero / mean / random control: metrics, sink rate per
layer, the patched sites) and the sink study (q/k/cos decomposition per head, loss change when
the attention to position 0 is removed). It reads the run store only.
"""

from __future__ import annotations

from typing import NamedTuple

import streamlit as st

from analyses.figures import interventions as fig
from dashboard import readers, state
from dashboard.charts import show


class Section(NamedTuple):
    """What a section shows: its table, the command that writes it, and what it holds."""

    title: str
    caption: str
    table: str
    key: str
    command: str
    what: str


ABLATION = Section(
    "Massive activations, causally",
    "The massive activations of the run's reference text, patched at their emergence layer "
    "(hook_resid_post) on held-out text: zero, their reference mean (Sun et al. 2024: mean "
    "keeps perplexity, zero collapses the model), and a control zeroing as many random "
    "non-massive entries (several draws).",
    "massive_ablation", "massive_ablation_run", "attnlab massive ablate --model {model}",
    "metrics with the massive activations patched")
SINKS = Section(
    "Attention sinks, causally",
    "Per head, the attention to position 0 split into |q|·|k0|·cos θ against the other keys "
    "(rotary-applied q/k; a GQA head uses its KV group), the sink's value contribution "
    "|v0 W_O|, and the change of the held-out metric when that attention is removed and the "
    "rest renormalised.",
    "sink_decomposition", "sink_study_run",
    "attnlab massive sinks --model {model} --top-heads 5",
    "the q/k/cos decomposition of the attention to position 0")


def _open(section: Section, model: str | None) -> state.Loaded | None:
    """Header, caption and run picker of ``section``; its table, or None (with a message).

    ``model``: the page run's model. Only that model's intervention runs are offered (a page
    never mixes models); with none, the command for that model, and which models have one.
    """
    st.header(section.title)
    st.caption(section.caption)
    runs = readers.runs_with_table(section.table)
    mine = runs if model is None or runs.empty else runs[runs["model"] == model]
    if mine.empty:
        others = sorted(set(runs["model"].dropna())) if not runs.empty else []
        what = f"for {model}" if model else ""
        st.info(f"No completed run {what} holds the table **{section.table}** "
                f"({section.what}). Run:")
        st.code(section.command.format(model=model or "smollm2"), language="bash")
        if others:
            st.caption(f"Runs of {', '.join(others)} hold it: pick one of them as the page run.")
        return None
    ids = list(mine["run_id"])
    run_id = st.selectbox("Run", ids, key=section.key,
                          format_func=lambda r: f"{r} ({model})" if model else r)
    loaded = None if run_id is None else state.read(run_id, section.table)
    if loaded is not None and loaded.model == "smollm2":
        st.caption("SmolLM2-135M-Instruct in its Q4_1 quantisation (dequantised to fp32).")
    return loaded


def show_ablation(model: str | None = None) -> None:
    table = _open(ABLATION, model)
    if table is None:
        return
    sites = state.read_optional(table.run_id, "massive_sites")
    if sites is not None:
        s = sites.df
        st.caption(f"Patched at layer {int(s['layer'].iloc[0])}: " + ", ".join(
            f"dim {int(r.dim)} on {r.token!r} (reference mean {r.mean:.1f})"
            for r in s.itertuples()))
    st.dataframe(fig.ablation_summary(table.df), hide_index=True, width="stretch")
    show(fig.massive_ablation_figure(table.df), key="massive_ablation_fig")
    if (table.df["metric"] == "sink_rate").any():
        show(fig.ablation_sink_rate_figure(table.df), key="massive_ablation_sinks")


def show_sinks(model: str | None = None) -> None:
    dec = _open(SINKS, model)
    if dec is None:
        return
    show(fig.sink_decomposition_figure(dec.df), key="sink_decomposition_fig")
    grid = dec.df.pivot_table(index=["layer", "head"], columns="stat", values="value")
    st.dataframe(grid.reset_index().sort_values("sink_score", ascending=False),
                 hide_index=True, width="stretch")
    removal = state.read_optional(dec.run_id, "sink_removal", allow_empty=True)
    if removal is not None and not removal.df.empty:
        show(fig.sink_removal_figure(removal.df), key="sink_removal_fig")


def show_interventions(model: str | None = None) -> None:
    """Both sections (called by the Massive activations page with its run's model)."""
    show_ablation(model)
    show_sinks(model)
