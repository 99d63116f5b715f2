"""The one writer of attnlab's report pages: sections of text, tables and plotly figures.

Each report (:mod:`analyses.reports.circuit`, :mod:`analyses.reports.redundancy`) only says
what its page holds, as a :class:`Page`; this module writes it

- as one self-contained HTML string (:func:`render_html`): plotly.js inlined once, before the
  first figure, and nothing loaded from a CDN or any other address, so the file opens
  offline; every title, text and table cell is HTML-escaped;
- as Markdown (:func:`render_markdown`) for PRs and CI logs: the same text and tables,
  figures left out.

    page = Page("Circuit report: organism / ioi", intro=(Text("64 pairs", note=True),),
                sections=(Section("Top heads", (Table(df),)), Section("Heads", (Figure(fig),))))
    render_html(page), render_markdown(page)
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}h2{margin-top:2em;border-bottom:1px solid #ddd}
.note{color:#555}"""


class Text(NamedTuple):
    """A paragraph of plain text (escaped in HTML); ``note`` greys it out."""

    text: str
    note: bool = False


class Table(NamedTuple):
    """A table, written without its index."""

    df: pd.DataFrame


class Figure(NamedTuple):
    """A plotly figure (HTML only; Markdown leaves it out)."""

    figure: go.Figure


Block = Text | Table | Figure


@dataclass(frozen=True)
class Section:
    """A titled part of a page: its blocks, in order."""

    title: str
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Page:
    """A whole report: ``title`` (the ``<title>``, ``<h1>`` and Markdown ``#``), an intro and
    sections."""

    title: str
    intro: tuple[Block, ...] = ()
    sections: tuple[Section, ...] = ()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' to_markdown needs the optional tabulate)."""
    cells = [[str(c) for c in df.columns]]
    cells += [[str(v) for v in row] for row in df.itertuples(index=False)]
    rows = ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join([rows[0], "|" + "---|" * len(df.columns)] + rows[1:])


def _html_block(block: Block, first_figure: bool) -> str:
    if isinstance(block, Text):
        css = " class='note'" if block.note else ""
        return f"<p{css}>{html.escape(block.text)}</p>"
    if isinstance(block, Table):
        return block.df.to_html(index=False, escape=True)
    return block.figure.to_html(full_html=False, include_plotlyjs=first_figure,
                                include_mathjax=False)


def render_html(page: Page) -> str:
    """The page as one HTML document; plotly.js is inlined once, nothing is fetched."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>attnlab: "
             f"{html.escape(page.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(page.title)}</h1>"]
    n_figures = 0
    for title, blocks in [(None, page.intro), *((s.title, s.blocks) for s in page.sections)]:
        if title is not None:
            parts.append(f"<h2>{html.escape(title)}</h2>")
        for block in blocks:
            first = isinstance(block, Figure) and n_figures == 0
            parts.append(_html_block(block, first_figure=first))
            n_figures += isinstance(block, Figure)
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown_block(block: Block) -> str | None:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Table):
        return markdown_table(block.df)
    return None  # figures are HTML only


def render_markdown(page: Page) -> str:
    """The page's text and tables as Markdown; a section holding only figures is left out."""
    lines = [f"# {page.title}", ""]
    for block in page.intro:
        if (md := _markdown_block(block)) is not None:
            lines += [md, ""]
    for section in page.sections:
        body = [md for b in section.blocks if (md := _markdown_block(b)) is not None]
        if body:
            lines += [f"## {section.title}", ""]
            for md in body:
                lines += [md, ""]
    return "\n".join(lines)
