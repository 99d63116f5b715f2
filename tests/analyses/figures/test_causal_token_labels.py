"""Position axes of patching heatmaps carry the clean prompt's tokens."""

import pandas as pd

from analyses.figures import causal as figures
from data.task_tokens import clean_prompt_tokens
from data.tasks import load_task


def _resid(n_pos: int, heads: bool = False) -> pd.DataFrame:
    rows = [{"task": "ioi", "component": "z" if heads else "resid_pre", "layer": la,
             "head": 0 if heads else -1, "position": p, "effect": 0.1 * p,
             "normalized_effect": 0.1 * p + la, "method": "denoising"}
            for la in range(2) for p in range(n_pos)]
    return pd.DataFrame(rows)


def test_clean_prompt_tokens_match_the_prompt_text_and_mark_varying_positions():
    got = clean_prompt_tokens("ioi", 6, 0, "organism")
    data = load_task("ioi", 6, 0)
    assert got.tokens == ("<bos>", *data.clean_prompts[0].split())
    words = [p.split() for p in data.clean_prompts]
    expect = tuple(i + 1 for i in range(len(words[0])) if len({w[i] for w in words}) > 1)
    assert got.varying == expect and got.varying  # IOI names differ between prompts


def test_position_ticks_are_the_tokens():
    toks = clean_prompt_tokens("ioi", 6, 0, "organism")
    n = len(toks.tokens)
    fig = figures.patching_heatmap(_resid(n), tokens=toks.tokens, varying=toks.varying)
    ticks = list(fig.layout.xaxis.ticktext)
    assert [t.split(": ", 1)[1].rstrip("*") for t in ticks] == list(toks.tokens)
    assert [t.endswith("*") for t in ticks] == [i in toks.varying for i in range(n)]
    assert "clean prompt 0" in fig.layout.xaxis.title.text
    assert "differs between prompts" in fig.layout.xaxis.title.text
    # per-position head sweeps (head x position) get the same labels
    heads = figures.patching_heatmap(_resid(n, heads=True), tokens=toks.tokens)
    assert list(heads.layout.xaxis.ticktext) == [f"{i}: {t}" for i, t in enumerate(toks.tokens)]


def test_without_tokens_positions_stay_numbers():
    fig = figures.patching_heatmap(_resid(3))
    assert list(fig.layout.xaxis.ticktext) == ["0", "1", "2"]
    assert fig.layout.xaxis.title.text == "position"
