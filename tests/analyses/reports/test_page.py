"""analyses.reports.page: one writer for every report: escaped, offline, Markdown sans figures."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

from analyses.reports.page import Figure, Page, Section, Table, Text, render_html, render_markdown


def page() -> Page:
    fig = go.Figure(go.Bar(x=[1, 2], y=[3, 4]))
    return Page("A <b>report</b>", (Text("x < y & z", note=True),), (
        Section("Numbers", (Table(pd.DataFrame({"a<b": ["<i>1</i>"]})),)),
        Section("Plots", (Figure(fig), Figure(fig))),
    ))


def test_html_escapes_text_and_inlines_plotly_once():
    out = render_html(page())
    assert out.startswith("<!doctype html>") and out.rstrip().endswith("</html>")
    assert "<h1>A &lt;b&gt;report&lt;/b&gt;</h1>" in out
    assert "<p class='note'>x &lt; y &amp; z</p>" in out
    assert "&lt;i&gt;1&lt;/i&gt;" in out and "<i>1</i>" not in out
    assert not re.search(r"<script[^>]+src\s*=", out, flags=re.I)  # nothing from a CDN
    assert out.count("Plotly.newPlot") == 2 and len(out) > 1_000_000  # plotly.js inlined


def test_markdown_leaves_out_figures():
    md = render_markdown(page())
    assert md.startswith("# A <b>report</b>\n\nx < y & z\n")
    assert "## Numbers" in md and "| a<b |" in md
    assert "Plots" not in md
