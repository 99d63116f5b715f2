"""The redundancy report: ``redundancy.html`` of a ``attnlab redundancy`` run (He et al. 2024).

:func:`analyses.redundancy.study.write_run` writes :func:`report_html` of its result into the
run: the He et al. comparison's verdict and what the study ran on (model, calibration and
held-out data), a table of every plan's metrics after its last drop, then every redundancy
figure (:mod:`analyses.figures.redundancy`), as one self-contained page
(:mod:`analyses.reports.page`: plotly.js inlined once, works offline).
"""

from __future__ import annotations

import pandas as pd

from analyses.figures import redundancy as figures
from analyses.reports import page as pages


def setup_lines(setup: dict | None) -> list[str]:
    """One line per fact of a study's ``setup`` (model, data, schedule), for the page intro."""
    if not setup:
        return []
    lines = [setup["model_note"]] if "model_note" in setup else []
    if "calibration_text" in setup:
        lines.append(f"Scores on {setup['calibration_text']} ({setup['calibration_prompts']} "
                     f"prompts, {setup['calibration_tokens']} tokens); LM loss on "
                     f"{setup['lm_loss_text']} ({setup['lm_loss_prompts']} prompts, "
                     f"{setup['lm_loss_tokens']} tokens); top-1 accuracy on "
                     f"{', '.join(setup['tasks'])} ({setup['n_items']} items each).")
    most = "all possible" if setup["max_drop"] is None else f"up to {setup['max_drop']}"
    lines.append(f"Strategies {', '.join(setup['strategies'])}, {most} drops, curves every "
                 f"{setup['eval_every']} drop(s), random seeds "
                 f"{setup['random_seeds']}; speed timed on {setup['timing_prompts']} prompts "
                 f"({setup['timing_tokens']} tokens), median of {setup['timing_repeats']}.")
    return lines


def last_point_table(curve: pd.DataFrame) -> pd.DataFrame:
    """Each plan's metrics after its last drop (random plans: mean over seeds), with the full
    model first: one row per strategy/mode, one column per metric."""
    keys = ["strategy", "mode"]
    last = curve[curve["n_dropped"] == curve.groupby(keys)["n_dropped"].transform("max")]
    table = (last.groupby([*keys, "n_dropped", "metric"], sort=False)["value"].mean()
             .unstack("metric").reset_index())
    full = (curve[curve["n_dropped"] == 0].groupby("metric")["value"].mean().to_frame().T
            .assign(strategy="none (full model)", mode="", n_dropped=0))
    out = pd.concat([full, table], ignore_index=True).rename_axis(columns=None)
    metrics = [c for c in out.columns if c not in (*keys, "n_dropped")]
    return out[[*keys, "n_dropped", *metrics]].round(4)


SPEED_COLUMNS = ("strategy", "mode", "n_dropped", "n_tokens", "full_ms", "pruned_ms", "speedup",
                 "speedup_min", "speedup_cpu", "speedup_macs")


def speed_summary(speed: pd.DataFrame) -> pd.DataFrame:
    """The speedup rows with the columns a reader compares: wall-time median and best-of,
    CPU time, and the multiply-add ratio that a noise-free machine would approach."""
    return speed[[c for c in SPEED_COLUMNS if c in speed]].round(3)


def redundancy_page(result) -> pages.Page:
    """What the report shows, from an ``analyses.redundancy.study.RedundancyResult``."""
    scores = result.redundancy
    importance = [figures.importance_bars(scores), figures.importance_heatmap(scores)]
    if "definition" in scores and (scores["definition"] == "residual_sum").any():
        importance.append(figures.importance_bars(scores, "residual_sum"))
    curve = result.drop_curve
    sections = [
        ("After the last drop", [pages.Table(last_point_table(curve))]),
        ("Importance scores (low = redundant)", [pages.Figure(f) for f in importance]),
        ("Performance vs dropped components",
         [pages.Figure(figures.drop_curve_figure(curve, m)) for m in curve["metric"].unique()]),
        ("Measured speedup", [pages.Table(speed_summary(result.speedup)),
                              pages.Figure(figures.speedup_figure(result.speedup))]),
    ]
    heads = result.head_importance
    if heads is not None:
        sections.append(("Head importance", [
            pages.Figure(figures.head_importance_heatmap(heads, t, m))
            for t in heads["task"].unique() for m in ("zero", "mean")]))
    intro = (pages.Text(result.comparison.verdict),
             *(pages.Text(line, note=True) for line in setup_lines(result.setup)))
    return pages.Page("Redundancy (He et al. 2024)", intro,
                      tuple(pages.Section(title, tuple(blocks)) for title, blocks in sections))


def report_html(result) -> str:
    """One self-contained HTML page (plotly.js inline once) with every figure of a result."""
    return pages.render_html(redundancy_page(result))
