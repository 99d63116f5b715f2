"""The head explorer's tables for one model: every head's scores and top prompts
(:mod:`probes.head_scores`) over the model's default tasks, plus the exact QK decomposition of
its top induction heads on the induction task. ``attnlab heads`` writes them as one run."""

from __future__ import annotations

import pandas as pd

from analyses.qk.decompose import QKConfig, decompose_qk
from analyses.qk.table import qk_summary, qk_table
from data.tasks import default_tasks, load_task
from probes.head_scores import HeadScoreConfig, head_scores


def explorer_tables(loaded, model: str, n: int = 32, seed: int = 0, qk_top: int = 2,
                    config: HeadScoreConfig | None = None) -> dict[str, pd.DataFrame]:
    """``head_scores``, ``head_top_sequences``, ``head_top_patterns`` and (``qk_top`` > 0)
    ``qk_terms`` / ``qk_summary`` of the ``qk_top`` heads with the highest induction score."""
    datasets = {t: load_task(t, n, seed, model=model).clean_tokens for t in default_tasks(model)}
    out = head_scores(loaded, datasets, ("induction",), config or HeadScoreConfig())
    tables = {"head_scores": out.scores, "head_top_sequences": out.top_sequences,
              "head_top_patterns": out.top_patterns}
    top = out.scores[out.scores["stat"] == "induction"].nlargest(qk_top, "value")
    terms, summaries = [], []
    for r in top.itertuples():
        res = decompose_qk(loaded, datasets["induction"], QKConfig(layer=r.layer, head=r.head))
        terms.append(qk_table(res, model=model, task="induction"))
        summaries.append(qk_summary(res, model=model, task="induction"))
    if terms:
        tables["qk_terms"] = pd.concat(terms, ignore_index=True)
        tables["qk_summary"] = pd.concat(summaries, ignore_index=True)
    return tables
