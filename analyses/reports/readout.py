"""The written readout at the top of a circuit report: what the numbers say, in sentences.

Every sentence is generated from the analysis' own tables (no threshold decides what is
"found"; each number is stated with the convention that reads it), so the readout cannot
drift from the tables below it. Heads are written ``L1H2`` (:mod:`data.notation`), path
patching receivers in words (:func:`receivers_words`).

    lines = circuit_readout(analysis)      # list of sentences, the report's first section
"""

from __future__ import annotations

import re

import pandas as pd

from analyses.figures.labels import head_set_label, row_label
from data.notation import parse_head

_RECEIVER = re.compile(r"^(?P<head>[^()]+)\((?P<inputs>[qkv]+)\)$")
INPUT_WORDS = {"q": "queries", "k": "keys", "v": "values"}


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def receivers_words(text: str) -> str:
    """Path-patching receivers (``logits`` or ``L2H0(q) L2H1(kv)``, also ``2.0(q)``) in words:
    "the logits (direct paths)", "the queries of L2H0 and L2H1"."""
    if str(text).strip() in ("", "logits"):
        return "the logits (direct paths)"
    by_inputs: dict[str, list[str]] = {}
    for item in str(text).split():
        m = _RECEIVER.match(item)
        head, inputs = (m["head"], m["inputs"]) if m else (item, "qkv")
        try:
            label = parse_head(head).label
        except ValueError:
            label = head
        by_inputs.setdefault(inputs, []).append(label)
    parts = [f"the {_join([INPUT_WORDS[c] for c in inputs])} of {_join(heads)}"
             for inputs, heads in by_inputs.items()]
    return _join(parts)


def _behaviour(acc: pd.DataFrame, n: int) -> str:
    rows = acc.set_index("run")
    clean, corr = rows.loc["clean"], rows.loc["corrupted"]
    return (f"On {n} prompt pairs the model answers {clean.accuracy:.0%} of the clean prompts "
            f"correctly; the logit difference (correct minus wrong answer) is "
            f"{clean.logit_diff:.2f} on the clean and {corr.logit_diff:.2f} on the corrupted "
            "prompts.")


def _top_heads(top: pd.DataFrame, r: float) -> str:
    heads = [f"{row_label(t.layer, t.head)} ({t.denoising:.2f})" for t in top.itertuples()]
    return (f"Patching one head's output from the clean into the corrupted run (denoising; 1 = "
            f"restores the clean logit difference, 0 = no effect) restores most for "
            f"{_join(heads)}; attribution patching's estimates correlate with these exact "
            f"effects at r = {r:.3f}.")


def _roles(roles: pd.DataFrame) -> list[str]:
    if roles.empty:
        return ["Path patching assigned no head roles."]
    if "fits" not in roles.columns:  # direct paths to the logits (tasks other than IOI)
        heads = [f"{row_label(t.layer, t.head)} ({t.normalized_effect:.2f})"
                 for t in roles.itertuples()]
        return [f"The strongest direct paths to the logits (path patching, denoising; 1 = "
                f"restores the clean logit difference): {_join(heads)}."]
    out = ["Path patching from the ABC prompts into the clean run (noising: a negative "
           "normalized effect means the head's path carries the IO-vs-S logit difference, -1 = "
           "all of it; a positive one means it works against the answer):"]
    for recv, g in roles.groupby("receivers", sort=False):
        heads = [f"{row_label(t.layer, t.head)} {t.role.replace('_', ' ')} "
                 f"({t.normalized_effect:+.2f})" for t in g.itertuples()]
        out.append(f"paths into {receivers_words(recv)}: {_join(heads)}.")
    fit = roles[roles.fits.astype(bool)]
    n, m = len(roles), len(fit)
    if m == n:
        out.append(f"All {n} also attend as Wang et al.'s GPT-2 small heads of that role do.")
    elif m == 0:
        out.append(f"None of the {n} attends as Wang et al.'s GPT-2 small heads of that role "
                   "do (table: what each attends to): the roles are path effects only, not "
                   "GPT-2's mechanism.")
    else:
        heads = [row_label(t.layer, t.head) for t in fit.itertuples()]
        out.append(f"{m} of the {n} ({_join(heads)}) also attend as Wang et al.'s heads of "
                   "that role do; the others are path effects only (table: what each attends "
                   "to).")
    return out


def _impairment(table: pd.DataFrame) -> list[str]:
    out = []
    for name, g in table[table.ablated_set.str.startswith("top_")].groupby("ablated_set",
                                                                            sort=False):
        task = name.removeprefix("top_")
        own = g[g.task == task]
        rand = table[(table.task == task) & table.ablated_set.str.startswith("random_")]
        if own.empty:
            continue
        r = own.iloc[0].to_dict()  # a Series' .drop is a method: read fields by key
        line = (f"Ablating the top {task} heads ({head_set_label(r['heads'])}) changes {task} "
                f"accuracy from {r['accuracy']:.2f} to {r['accuracy_ablated']:.2f} (drop "
                f"{r['drop']:+.2f}")
        if not rand.empty:
            q = rand.iloc[0].to_dict()
            line += (f"; random sets of {int(q['k'])}: {q['drop']:+.2f} +- "
                     f"{q['drop_std']:.2f}")
        out.append(line + ").")
    return out


def circuit_readout(a, caveats: tuple[str, ...] = ()) -> list[str]:
    """The readout of a :class:`~analyses.causal.circuit.CircuitAnalysis`, sentence by
    sentence; ``caveats``: what the analysis warned about, said in the readout."""
    lines = [_behaviour(a.accuracy, a.config.n), _top_heads(a.top_heads, a.attribution_r)]
    lines += _roles(a.roles)
    lines += _impairment(a.impairment.table)
    lines += [f"Caveat: {c}" for c in caveats]
    return lines
