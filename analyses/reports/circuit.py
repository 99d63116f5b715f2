"""Circuit reports: one self-contained HTML file plus a Markdown summary, in a run.

``attnlab report circuit --model organism --task ioi`` calls :func:`write_circuit_report`:
it runs :func:`analyses.causal.circuit.analyse_circuit` and writes, into a new run of the run store,

- ``report.html``: plotly figures with plotly.js embedded once inline (no CDN, works
  offline), tables as HTML (written by :mod:`analyses.reports.page`);
- ``report.md``: the same findings as Markdown tables (for PRs, CI logs);
- tables ``patching`` and ``impairment`` (Parquet, schemas in :mod:`data.schemas`) and
  ``circuit_roles`` / ``circuit_sae_features`` when present.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from analyses.causal.circuit import CircuitAnalysis, CircuitConfig, analyse_circuit
from analyses.figures import causal as figures
from analyses.reports import page as pages


def _figures(a: CircuitAnalysis) -> list[tuple[str, go.Figure]]:
    p = a.patching
    out = [
        ("Head outputs, denoising (layer x head)", figures.patching_heatmap(p, "z", "denoising")),
        ("Head outputs, noising (layer x head)", figures.patching_heatmap(p, "z", "noising")),
        ("Residual stream (layer x position)", figures.patching_heatmap(p, "resid_pre")),
        ("Attention outputs (layer x position)", figures.patching_heatmap(p, "attn_out")),
        ("MLP outputs (layer x position)", figures.patching_heatmap(p, "mlp_out")),
        ("Attribution vs exact", figures.attribution_scatter(p, "z", "denoising")),
    ]
    if (p.component == "path_z").any():
        for recv in p.loc[p.component == "path_z", "receivers"].unique():
            sub = p[(p.component == "path_z") & (p.receivers == recv)]
            out.append((f"Path patching into {recv}",
                        figures.patching_heatmap(sub, title=f"path patching -> {recv}")))
    out.append(("Ablations", figures.ablation_table_figure(a.impairment.table)))
    return out


def _tables(a: CircuitAnalysis) -> list[tuple[str, pd.DataFrame]]:
    out = [("Accuracy and logit difference", a.accuracy),
           (f"Top heads (attribution vs exact: r = {a.attribution_r:.3f})", a.top_heads),
           ("Circuit roles (path patching)", a.roles),
           ("Selective impairment (accuracy drop when a head set is ablated)",
            a.impairment.table)]
    if a.sae_features is not None:
        out.append(("Top SAE features of the top heads (direct feature attribution)",
                    a.sae_features))
    return out


def circuit_page(a: CircuitAnalysis, with_figures: bool = True) -> pages.Page:
    """What the report shows: tables (rounded to 4 digits), the SAE note, then the figures."""
    sections = [pages.Section(title, (pages.Table(df.round(4)),)) for title, df in _tables(a)]
    sections.append(pages.Section("SAEs", (pages.Text(a.sae_note or "none"),)))
    if with_figures:
        sections += [pages.Section(title, (pages.Figure(fig),)) for title, fig in _figures(a)]
    intro = pages.Text(f"{a.config.n} clean/corrupted pairs, seed {a.config.seed}. Effects "
                       "are normalised (0 = corrupted run, 1 = clean run).", note=True)
    return pages.Page(f"Circuit report: {a.model} / {a.config.task}", (intro,), tuple(sections))


def render_html(a: CircuitAnalysis) -> str:
    """The report as one HTML document; plotly.js is inlined once, nothing is fetched."""
    return pages.render_html(circuit_page(a))


def render_markdown(a: CircuitAnalysis) -> str:
    """The report's text and tables as Markdown (no figures, so none are drawn)."""
    return pages.render_markdown(circuit_page(a, with_figures=False))


def write_circuit_report(loaded, config: CircuitConfig, store, out: str | Path | None = None,
                         progress: bool = True):
    """Analyse, then write the run (tables, report.html, report.md); returns (run, analysis)."""
    from data.store import atomic_write_text

    with store.start_run(command="report circuit", model=loaded.name,
                         config={"task": config.task, "n": config.n, "seed": config.seed,
                                 "top_k": config.top_k, "ablation": config.ablation}) as run:
        a = analyse_circuit(loaded, config, progress=progress)
        run.write_table("patching", a.patching)
        run.write_table("impairment", a.impairment.table)
        run.write_table("circuit_roles", a.roles)
        if a.sae_features is not None:
            run.write_table("circuit_sae_features", a.sae_features)
        page, md = render_html(a), render_markdown(a)
        for folder in [Path(run.path)] + ([Path(out)] if out else []):
            atomic_write_text(folder / "report.html", page)
            atomic_write_text(folder / "report.md", md)
        run.update_manifest(attribution_r=a.attribution_r, sae_note=a.sae_note)
    return run, a
