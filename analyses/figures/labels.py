"""How figures and CLI output name heads, rows of a sweep and head sets: one notation.

Tables keep integer ``layer``/``head`` columns (``head = -1``: not a head); everything a reader
sees names a head ``L1H2`` (docs/GLOSSARY.md, :func:`data.notation.head_label`). These helpers
turn table rows into those names so no figure or command formats a head by hand.

    row_label(1, 2)                 # 'L1H2'
    row_label(3, -1)                # 'layer 3'
    head_set_label("0.1 1.2 mlp0")  # 'L0H1 L1H2 mlp0' (impairment tables store 'layer.head')
"""

from __future__ import annotations

import pandas as pd

from data.notation import head_label, parse_head


def row_label(layer: int, head: int) -> str:
    """``L1H2`` for a head, ``layer 3`` for a row that is not one (``head < 0``)."""
    return head_label(layer, head) if int(head) >= 0 else f"layer {int(layer)}"


def row_labels(df: pd.DataFrame) -> list[str]:
    """:func:`row_label` of every row of a table with ``layer`` and ``head`` columns."""
    return [row_label(la, h) for la, h in zip(df["layer"], df["head"])]


def head_set_label(text: str) -> str:
    """A space-separated set of components with every head (``1.2`` or ``L1H2``) as ``L1H2``.

    Items that are not heads (``mlp0``, ``5 sets``) are kept as they are.
    """
    out = []
    for item in str(text).split(" "):
        try:
            out.append(parse_head(item).label)
        except ValueError:
            out.append(item)
    return " ".join(out)


def with_head_column(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``layer``/``head`` columns replaced by one ``head`` label column.

    For printing: the label takes the place of ``layer``; rows that are not heads read
    ``layer N``. A table without both columns, or without a single head row, is returned
    unchanged.
    """
    if not {"layer", "head"} <= set(df.columns) or not (df["head"] >= 0).any():
        return df
    out = df.drop(columns="head").rename(columns={"layer": "head"})
    out["head"] = row_labels(df)
    return out
