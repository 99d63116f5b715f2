"""The redundancy report: ``redundancy.html`` of a ``attnlab redundancy`` run (He et al. 2024).

:func:`analyses.redundancy.study.write_run` writes :func:`report_html` of its result into the
run: the He et al. comparison's verdict, then every redundancy figure
(:mod:`analyses.figures.redundancy`), as one self-contained page
(:mod:`analyses.reports.page`: plotly.js inlined once, works offline).
"""

from __future__ import annotations

from analyses.figures import redundancy as figures
from analyses.reports import page as pages


def redundancy_page(result) -> pages.Page:
    """What the report shows, from an ``analyses.redundancy.study.RedundancyResult``."""
    scores = result.redundancy
    importance = [figures.importance_bars(scores), figures.importance_heatmap(scores)]
    if "definition" in scores and (scores["definition"] == "residual_sum").any():
        importance.append(figures.importance_bars(scores, "residual_sum"))
    curve = result.drop_curve
    sections = [
        ("Importance scores (low = redundant)", importance),
        ("Performance vs dropped components",
         [figures.drop_curve_figure(curve, m) for m in curve["metric"].unique()]),
        ("Measured speedup", [figures.speedup_figure(result.speedup)]),
    ]
    heads = result.head_importance
    if heads is not None:
        sections.append(("Head importance", [
            figures.head_importance_heatmap(heads, t, m)
            for t in heads["task"].unique() for m in ("zero", "mean")]))
    return pages.Page(
        "Redundancy (He et al. 2024)", (pages.Text(result.comparison.verdict),),
        tuple(pages.Section(title, tuple(pages.Figure(f) for f in figs))
              for title, figs in sections))


def report_html(result) -> str:
    """One self-contained HTML page (plotly.js inline once) with every figure of a result."""
    return pages.render_html(redundancy_page(result))
