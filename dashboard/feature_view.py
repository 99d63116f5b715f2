"""HTML of an SAE feature's top examples: full-width contexts, the token coloured by activation.

Streamlit's dataframe cuts a long ``context`` cell, hiding the ``[[token]]`` marker; here each
example is one line of text with the active token on an orange background whose strength is
its activation over the feature's top activation (sae_vis / Neuronpedia style), and the
activation beside it. Tables with ``context_tokens`` / ``context_acts`` / ``context_pos``
(saes.features, JSON lists) get EVERY context token coloured by its own activation, the
example's token underlined; runs written before those columns store only the marked token's
activation, so there only that token is coloured.
"""

from __future__ import annotations

import html
import json
import re

import pandas as pd

_MARK = re.compile(r"\[\[(.*?)\]\]", re.S)


def _token_html(token: str, strength: float, activation: float) -> str:
    alpha = max(0.15, min(1.0, strength))
    return (f'<span title="activation {activation:.3g}" style="background: rgba(245,133,24,'
            f'{alpha:.2f}); border-radius: 3px; padding: 0 2px; font-weight: 600">'
            f"{html.escape(token)}</span>")


def example_html(context: str, activation: float, top: float) -> str:
    """One context with its ``[[token]]`` coloured by ``activation / top``."""
    strength = activation / top if top > 0 else 1.0
    parts, last = [], 0
    for m in _MARK.finditer(context):
        parts.append(html.escape(context[last:m.start()]))
        parts.append(_token_html(m.group(1), strength, activation))
        last = m.end()
    parts.append(html.escape(context[last:]))
    return "".join(parts)


def context_html(str_tokens, acts, mark: int, top: float) -> str:
    """Every context token on a background of strength activation / ``top`` (0 = none), the
    token at index ``mark`` (the example's) underlined; tokens joined by spaces as in
    ``context``."""
    if len(str_tokens) != len(acts):
        raise ValueError(f"{len(str_tokens)} context tokens but {len(acts)} activations: "
                         "the table's context_tokens / context_acts are not aligned")
    spans = []
    for i, (tok, a) in enumerate(zip(str_tokens, acts)):
        alpha = max(0.0, min(1.0, a / top)) if top > 0 else 0.0
        underline = "; border-bottom: 2px solid #333; font-weight: 600" if i == mark else ""
        spans.append(f'<span title="activation {a:.3g}" style="background: rgba(245,133,24,'
                     f'{alpha:.3f}); border-radius: 3px{underline}">{html.escape(str(tok))}'
                     "</span>")
    return " ".join(spans)


def _row_html(row, top: float) -> str:
    """One example's context: per-token colours where the row has them, else the marker."""
    acts = getattr(row, "context_acts", None)
    if isinstance(acts, str):
        return context_html(json.loads(row.context_tokens), json.loads(acts),
                            int(row.context_pos), top)
    return example_html(str(row.context), float(row.activation), top)


def examples_html(examples: pd.DataFrame, top: float, css: str = "attnlab-examples") -> str:
    """All examples of one feature (rank order) as full-width rows: activation, context."""
    rows = [f'<div style="display: flex; gap: 1em; padding: 3px 0; border-bottom: 1px solid '
            f'#eee"><code style="min-width: 5em; text-align: right">{r.activation:.3g}</code>'
            f'<span style="font-family: Menlo, Consolas, monospace; white-space: pre-wrap">'
            f"{_row_html(r, top)}</span></div>"
            for r in examples.itertuples(index=False)]
    return f'<div class="{css}">' + "".join(rows) + "</div>"


def tokens_html(str_tokens, acts, top: float | None = None) -> str:
    """A prompt with every token coloured by its activation / ``top`` (default: the max)."""
    top = float(max(acts)) if top is None else top
    spans = []
    for tok, a in zip(str_tokens, acts):
        if a > 0:
            spans.append(_token_html(str(tok), a / top if top > 0 else 1.0, float(a)))
        else:
            spans.append(f'<span title="activation 0">{html.escape(str(tok))}</span>')
    return ('<div class="attnlab-prompt" style="font-family: Menlo, Consolas, monospace; '
            'white-space: pre-wrap; line-height: 1.8">' + "".join(spans) + "</div>")


def bands_html(bands: pd.DataFrame, top: float) -> str:
    """One feature's activation-quantile band examples, highest band first, each band headed
    by its activation range and how many activations fall in it (colours as the top
    examples: activation / ``top``)."""
    parts = []
    for (low, high), part in sorted(bands.groupby(["band_low", "band_high"]),
                                    key=lambda kv: -kv[0][1]):
        count = int(part["band_count"].iloc[0])
        parts.append(f'<div class="attnlab-band" style="margin-top: 0.6em"><b>Activation '
                     f"{low:.3g} – {high:.3g}</b> <small>({count} activations in this band; "
                     f"{len(part)} shown at random)</small>"
                     + examples_html(part.sort_values("rank"), top, "attnlab-band-examples")
                     + "</div>")
    return '<div class="attnlab-bands">' + "".join(parts) + "</div>"
