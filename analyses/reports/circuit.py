"""Circuit reports: one self-contained HTML file plus a Markdown summary, in a run.

``attnlab report circuit --model organism --task ioi`` calls :func:`write_circuit_report`:
it runs :func:`analyses.causal.circuit.analyse_circuit` and writes, into a new run of the run store,

- ``report.html``: plotly figures with plotly.js embedded once inline (no CDN, works
  offline), tables as HTML (written by :mod:`analyses.reports.page`);
- ``report.md``: the same findings as Markdown tables (for PRs, CI logs);
- tables ``patching`` and ``impairment`` (Parquet, schemas in :mod:`data.schemas`),
  ``circuit_roles`` / ``circuit_sae_features`` when present, and ``attribution_all_pairs``
  (the `patching` columns) when attribution also ran on more pairs than the exact sweeps;
- in the manifest: the whole :class:`~analyses.causal.circuit.CircuitConfig` (pairs of the
  exact and of the other steps, which sweeps ran, the impairment's families), the notes on
  what was run and why, both attribution correlations and the wall time.

A sweep the config skipped (the noising sweep, per-position sweeps: SmolLM2's cost-bounded
defaults) has no figure; the report says what was skipped.

The report opens with a written readout generated from the numbers
(:mod:`analyses.reports.readout`). What the analysis logged as a warning (a task whose clean
and corrupted runs barely differ, e.g. the organism's reasoning family used to pick the
impairment's head set) is kept out of the terminal and said there, as a caveat.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from analyses.causal.circuit import CircuitAnalysis, CircuitConfig, analyse_circuit
from analyses.causal.task_sets import model_note, task_model
from analyses.figures import causal as figures
from analyses.figures.labels import head_set_label, with_head_column
from analyses.reports import page as pages
from analyses.reports.readout import circuit_readout, receivers_words
from data.task_tokens import PromptTokens, clean_prompt_tokens

#: loggers whose warnings become the report's caveats
CAVEAT_LOGGERS = ("analyses.causal.patching", "analyses.causal.impairment")
CAVEAT = "caveat: "  # the prefix of a note that is a kept warning


def _has(p: pd.DataFrame, component: str, method: str | None = None) -> bool:
    rows = p.component == component
    return bool((rows & (p.method == method)).any() if method else rows.any())


def _prompt_tokens(a: CircuitAnalysis) -> PromptTokens:
    """The first clean prompt's tokens, to label the position axes (the sweeps' pairs are the
    first ``n_exact`` of ``load_task(task, n, seed)``, so prompt 0 is the same)."""
    c = a.config
    return clean_prompt_tokens(c.task, c.n, c.seed, task_model(a.model))


def _figures(a: CircuitAnalysis) -> list[tuple[str, go.Figure]]:
    p = a.patching
    by = "layer x position" if a.config.position_sweeps else "by layer"
    heads = [("Head outputs, denoising (layer x head)", "z", "denoising"),
             ("Head outputs, noising (layer x head)", "z", "noising"),
             ("Residual stream (layer x position)", "resid_pre", None),
             (f"Attention outputs ({by})", "attn_out", None),
             (f"MLP outputs ({by})", "mlp_out", None)]
    toks = _prompt_tokens(a)
    out = [(title, figures.patching_heatmap(p, c, m, tokens=toks.tokens, varying=toks.varying))
           for title, c, m in heads if _has(p, c, m)]
    out.append(("Attribution vs exact", figures.attribution_scatter(p, "z", "denoising")))
    if (p.component == "path_z").any():
        for recv in p.loc[p.component == "path_z", "receivers"].unique():
            sub = p[(p.component == "path_z") & (p.receivers == recv)]
            words = receivers_words(recv)
            out.append((f"Path patching: each sender head's path into {words}",
                        figures.patching_heatmap(sub, title=f"path patching into {words}")))
    out.append(("Ablations", figures.ablation_table_figure(a.impairment.table)))
    return out


def _top_title(a: CircuitAnalysis) -> str:
    n, ne = a.config.n, a.config.exact_pairs
    if a.attribution_r_all is None:
        return f"Top heads (attribution vs exact: r = {a.attribution_r:.3f})"
    return (f"Top heads by exact denoising on {ne} pairs (attribution vs exact on the same "
            f"{ne} pairs: r = {a.attribution_r:.3f}; attribution on {n} pairs vs exact: "
            f"r = {a.attribution_r_all:.3f})")


def _tables(a: CircuitAnalysis) -> list[tuple[str, pd.DataFrame]]:
    out = [("Accuracy and logit difference", a.accuracy),
           (_top_title(a), a.top_heads),
           ("Circuit roles (path patching)", a.roles),
           ("Selective impairment (accuracy drop when a head set is ablated)",
            a.impairment.table)]
    if a.sae_features is not None:
        out.append(("Top SAE features of the top heads (direct feature attribution)",
                    a.sae_features))
    return out


def _shown(df: pd.DataFrame) -> pd.DataFrame:
    """A table as the report shows it: 4 digits, heads as ``L1H2``, receivers in words, the
    roles' raw attention numbers left to the run table (their note says them)."""
    out = df.round(4)
    if "receivers" in out.columns:
        out = out.assign(receivers=[receivers_words(r) for r in out.receivers])
    if "heads" in out.columns:  # impairment sets, stored as '0.1 1.2'
        out = out.assign(heads=[head_set_label(h) for h in out.heads])
    return with_head_column(out.drop(columns=["attention"], errors="ignore"))


def caveats_of(a: CircuitAnalysis) -> tuple[str, ...]:
    """The warnings :func:`write_circuit_report` kept among ``a.notes`` (prefix ``caveat: ``)."""
    return tuple(n.removeprefix(CAVEAT) for n in a.notes if n.startswith(CAVEAT))


def circuit_page(a: CircuitAnalysis, with_figures: bool = True) -> pages.Page:
    """What the report shows: the readout (with the caveats among ``a.notes``), tables
    (rounded to 4 digits), the SAE note, what was run, then the figures."""
    caveats = caveats_of(a)
    notes = tuple(n for n in a.notes if not n.startswith(CAVEAT))
    readout = pages.Section("Readout", tuple(pages.Text(line)
                                             for line in circuit_readout(a, caveats)))
    sections = [readout] + [pages.Section(title, (pages.Table(_shown(df)),))
                            for title, df in _tables(a)]
    sections.append(pages.Section("SAEs", (pages.Text(a.sae_note or "none"),)))
    if notes:
        sections.append(pages.Section("What was run", tuple(pages.Text(n) for n in notes)))
    if with_figures:
        sections += [pages.Section(title, (pages.Figure(fig),)) for title, fig in _figures(a)]
    intro = [pages.Text(f"{a.config.n} clean/corrupted pairs, seed {a.config.seed}. Effects "
                        "are normalised (0 = corrupted run, 1 = clean run).", note=True)]
    if a.notes and model_note(a.model):
        intro.insert(0, pages.Text(f"Model: {model_note(a.model)}.", note=True))
    return pages.Page(f"Circuit report: {a.model} / {a.config.task}", tuple(intro),
                      tuple(sections))


def render_html(a: CircuitAnalysis) -> str:
    """The report as one HTML document; plotly.js is inlined once, nothing is fetched."""
    return pages.render_html(circuit_page(a))


def render_markdown(a: CircuitAnalysis) -> str:
    """The report's text and tables as Markdown (no figures, so none are drawn)."""
    return pages.render_markdown(circuit_page(a, with_figures=False))


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def caveats_kept(names=CAVEAT_LOGGERS) -> Iterator[list[str]]:
    """Collect the warnings of loggers ``names`` into a list instead of the terminal."""
    keep = _Keep()
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(keep)
        lg.propagate = False
    try:
        yield keep.messages
    finally:
        for lg, prop in zip(loggers, before):
            lg.removeHandler(keep)
            lg.propagate = prop


def write_circuit_report(loaded, config: CircuitConfig, store, out: str | Path | None = None,
                         progress: bool = True):
    """Analyse, then write the run (tables, report.html, report.md); returns (run, analysis)."""
    from data.store import atomic_write_text

    with store.start_run(command="report circuit", model=loaded.name,
                         config=manifest_config(config)) as run:
        with caveats_kept() as kept:
            a = analyse_circuit(loaded, config, progress=progress)
        kept = [f"{m} (a sweep of the analysis, e.g. the patching that picks the impairment's "
                "head set for that task)" for m in dict.fromkeys(kept)]
        a = a._replace(notes=tuple(a.notes) + tuple(CAVEAT + c for c in kept))
        run.write_table("patching", a.patching)
        run.write_table("impairment", a.impairment.table)
        run.write_table("circuit_roles", a.roles)
        if a.attribution_all is not None:
            run.write_table("attribution_all_pairs", a.attribution_all)
        if a.sae_features is not None:
            run.write_table("circuit_sae_features", a.sae_features)
        from analyses.reports.edge_section import with_edge_circuit  # the edge circuit

        page = pages.render_html(with_edge_circuit(circuit_page(a), store, loaded.name,
                                                   config.task))
        md = pages.render_markdown(with_edge_circuit(circuit_page(a, with_figures=False),
                                                     store, loaded.name, config.task,
                                                     with_figures=False))
        for folder in [Path(run.path)] + ([Path(out)] if out else []):
            atomic_write_text(folder / "report.html", page)
            atomic_write_text(folder / "report.md", md)
        run.update_manifest(attribution_r=a.attribution_r, sae_note=a.sae_note,
                            attribution_r_all_pairs=a.attribution_r_all, notes=list(a.notes),
                            seconds=round(a.seconds, 1) if a.seconds is not None else None,
                            impairment_sources=list(a.impairment.head_sets))
    return run, a


def manifest_config(config: CircuitConfig) -> dict:
    """The config as the manifest records it: every field, the pairs of the exact steps too."""
    out = dataclasses.asdict(config)
    out["exact_pairs"] = config.exact_pairs
    if out["impairment_tasks"] is not None:
        out["impairment_tasks"] = list(out["impairment_tasks"])
    return out
