"""The SAE features page's one choice: an attention SAE together with the run describing it.

Before, the encode box and the feature tables each had their own picker, so a page could
encode with one SAE and show another's features. Here one option is one SAE (shipped, saved in
a run, or a training checkpoint, each labelled so that they differ) paired with the newest
``attnlab sae features`` run made with it; a feature run whose SAE is not on disk here (e.g.
``sae_lens:`` releases) is an option of its own (its tables, no live encoding).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from dashboard import readers
from data.store import StoreError


class SaeChoice(NamedTuple):
    """One option of the page: the SAE folder (None: not on disk) and its feature-tables run."""

    label: str
    model: str | None
    layer: int | None
    path: str | None
    tables_run: str | None


def _where(row) -> str:
    """``shipped``, ``run X`` or ``run X · sae/checkpoints/123`` (checkpoints differ)."""
    if row.source == "shipped":
        return "shipped"
    run_id = str(row.source).removeprefix("run ")
    rel = Path(row.path).relative_to(readers.store().root / run_id).as_posix()
    return f"{row.source} · {rel}" + (" (checkpoint)" if "checkpoint" in rel else "")


def _resolved(sae: object, model: str | None, layer: int | None, saes: pd.DataFrame):
    """The folder a feature run's ``--sae`` names, as listed in ``saes`` (None if absent)."""
    if sae == "shipped":
        hit = saes[(saes["source"] == "shipped") & (saes["model"] == model)
                   & (saes["layer"] == layer)]
        return hit["path"].iloc[0] if len(hit) else None
    try:
        want = Path(str(sae)).resolve()
    except (OSError, RuntimeError):
        return None
    hit = [p for p in saes["path"] if Path(p).resolve() == want]
    return hit[0] if hit else None


def sae_choices() -> list[SaeChoice]:
    """Every option, SAEs with feature tables first, final SAEs before checkpoints."""
    saes = readers.list_saes()
    saes = saes.dropna(subset=["layer"]) if not saes.empty else saes
    described: dict[str, str] = {}
    orphans = []
    for run_id, model in zip(*[readers.runs_with_table("sae_feature_examples")[c]
                               for c in ("run_id", "model")]):
        try:
            config = readers.manifest(run_id).get("config") or {}
        except StoreError:
            continue
        layer = config.get("layer")
        path = _resolved(config.get("sae"), model, layer, saes) if len(saes) else None
        if path is None:
            orphans.append(SaeChoice(f"{model} · layer {layer} · SAE {config.get('sae')} "
                                     f"(not on disk here) · feature tables: run {run_id}",
                                     model, layer, None, run_id))
        else:
            described.setdefault(path, run_id)  # runs are newest first
    out = []
    for row in saes.itertuples():
        run_id = described.get(row.path)
        tables = f"feature tables: run {run_id}" if run_id else "no feature tables"
        out.append(SaeChoice(f"{row.model} · layer {int(row.layer)} · {row.architecture} · "
                             f"d_sae {row.d_sae} · {_where(row)} · {tables}",
                             row.model, int(row.layer), row.path, run_id))
    out += orphans
    out.sort(key=_order)
    return out


def _order(choice: SaeChoice) -> tuple:
    """Described SAEs first, then final SAEs, then checkpoints by training step."""
    step = re.search(r"checkpoints/(\d+)", choice.label)
    return (choice.tables_run is None, step is not None, int(step.group(1)) if step else 0)
