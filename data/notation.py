"""How attnlab writes heads and components, in tables, figures, CLI input and output.

One notation (docs/GLOSSARY.md): a head is ``L{layer}H{head}`` (``L1H2`` = layer 1, head 2),
an attention or MLP sublayer is ``attn{layer}`` / ``mlp{layer}``, a whole block ``block{layer}``.
Tables keep integer ``layer``/``head`` columns; labels are derived from them here. The CLI also
accepts the TransformerLens/IOI-paper form ``1.2`` for a head.

    head_label(1, 2)             # 'L1H2'
    parse_head("L1H2")           # Head(layer=1, head=2); parse_head("1.2") is the same
    parse_heads("L0H1, 1.3")     # [Head(0, 1), Head(1, 3)]; duplicates raise
"""

from __future__ import annotations

import re
from typing import NamedTuple

SUBLAYERS = ("attn", "mlp")  # the two residual-writing parts of a block
_HEAD = re.compile(r"^\s*(?:[lL](\d+)[hH](\d+)|(\d+)\.(\d+))\s*$")


class Head(NamedTuple):
    layer: int
    head: int

    @property
    def label(self) -> str:
        return head_label(self.layer, self.head)


def head_label(layer: int, head: int) -> str:
    """``L{layer}H{head}``: the one way attnlab writes a head."""
    return f"L{int(layer)}H{int(head)}"


def sublayer_label(kind: str, layer: int) -> str:
    """``attn3`` / ``mlp1`` / ``block2``: the one way attnlab writes a sublayer or block."""
    if kind not in (*SUBLAYERS, "block"):
        raise ValueError(f"kind must be one of {(*SUBLAYERS, 'block')}, got {kind!r}")
    return f"{kind}{int(layer)}"


def parse_head(text: str) -> Head:
    """A head from ``L1H2`` (attnlab's notation) or ``1.2`` (TransformerLens/IOI-paper form)."""
    m = _HEAD.match(text)
    if not m:
        raise ValueError(f"not a head: {text!r}; write it as L<layer>H<head> (e.g. L1H2) or "
                         "<layer>.<head> (e.g. 1.2)")
    a, b, c, d = m.groups()
    return Head(int(a if a is not None else c), int(b if b is not None else d))


def parse_heads(text: str) -> list[Head]:
    """Comma-separated heads (see :func:`parse_head`); empty items are skipped, repeats raise."""
    heads = [parse_head(item) for item in text.split(",") if item.strip()]
    seen: set[Head] = set()
    for h in heads:
        if h in seen:
            raise ValueError(f"head {h.label} is listed twice in {text!r}")
        seen.add(h)
    return heads
