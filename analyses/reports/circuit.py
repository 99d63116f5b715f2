"""Circuit reports: one self-contained HTML file plus a Markdown summary, in a run.

``attnlab report circuit --model organism --task ioi`` calls :func:`write_circuit_report`:
it runs :func:`analyses.causal.circuit.analyse_circuit` and writes, into a new run of the run store,

- ``report.html``: plotly figures with plotly.js embedded once inline (no CDN, works
  offline), tables as HTML;
- ``report.md``: the same findings as Markdown tables (for PRs, CI logs);
- tables ``patching`` and ``impairment`` (Parquet, schemas in :mod:`data.schemas`) and
  ``circuit_roles`` / ``circuit_sae_features`` when present.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from analyses.causal.circuit import CircuitAnalysis, CircuitConfig, analyse_circuit
from analyses.figures import causal as figures

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}h2{margin-top:2em;border-bottom:1px solid #ddd}
.note{color:#555}"""


def _figures(a: CircuitAnalysis) -> list[tuple[str, object]]:
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


def _fmt(df: pd.DataFrame) -> pd.DataFrame:
    return df.round(4)


def render_html(a: CircuitAnalysis) -> str:
    """The report as one HTML document; plotly.js is inlined once, nothing is fetched."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>attnlab circuit "
             f"report: {html.escape(a.config.task)}</title><style>{CSS}</style></head><body>",
             f"<h1>Circuit report: {html.escape(a.model)} / {html.escape(a.config.task)}</h1>",
             f"<p class='note'>{a.config.n} clean/corrupted pairs, seed {a.config.seed}; "
             "effects on the normalised scale (0 = corrupted, 1 = clean).</p>"]
    for title, df in _tables(a):
        parts.append(f"<h2>{html.escape(title)}</h2>{_fmt(df).to_html(index=False)}")
    parts.append(f"<p class='note'>SAEs: {html.escape(a.sae_note)}</p>")
    for i, (title, fig) in enumerate(_figures(a)):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    return "\n".join(parts)


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


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate)."""
    cells = [[str(c) for c in df.columns]]
    cells += [[str(v) for v in row] for row in df.itertuples(index=False)]
    rows = ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join([rows[0], "|" + "---|" * len(df.columns)] + rows[1:])


def render_markdown(a: CircuitAnalysis) -> str:
    lines = [f"# Circuit report: {a.model} / {a.config.task}", "",
             f"{a.config.n} clean/corrupted pairs, seed {a.config.seed}. Effects are "
             "normalised (0 = corrupted run, 1 = clean run).", ""]
    for title, df in _tables(a):
        lines += [f"## {title}", "", markdown_table(_fmt(df)), ""]
    lines += ["## SAEs", "", a.sae_note or "none", ""]
    return "\n".join(lines)


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
