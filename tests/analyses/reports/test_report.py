"""Figures are pure functions of tables; the circuit report is one offline HTML + Markdown."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch

from analyses.causal.circuit import CircuitAnalysis, CircuitConfig, top_head_table
from analyses.causal.impairment import ImpairmentResult
from analyses.figures import causal as figures
from analyses.reports.circuit import render_html, render_markdown
from analyses.reports.page import markdown_table


def sweep(method, scale=1.0, component="z", n_layers=2, n_heads=3):
    rows = []
    for la in range(n_layers):
        for h in range(n_heads):
            v = scale * (la * n_heads + h) / 10
            rows.append(("toy", component, la, h, -1, v, v, method, v, "logit_diff"))
    return pd.DataFrame(rows, columns=["task", "component", "layer", "head", "position",
                                       "effect", "normalized_effect", "method",
                                       "patched_metric", "metric"])


def resid_sweep(component):
    rows = [("toy", component, la, -1, p, 0.1 * p, 0.1 * p + la, "denoising", 0.0, "ld")
            for la in range(2) for p in range(4)]
    return pd.DataFrame(rows, columns=sweep("x").columns)


def impairment_table():
    return pd.DataFrame({"task": ["ioi", "recall", "ioi", "recall"],
                         "ablated_set": ["top_recall", "top_recall", "random_2", "random_2"],
                         "k": 2, "accuracy": [0.9, 0.8, 0.9, 0.8],
                         "accuracy_ablated": [0.85, 0.1, 0.88, 0.75],
                         "drop": [0.05, 0.7, 0.02, 0.05], "drop_std": [0, 0, 0.01, 0.02],
                         "heads": ["0.1 1.2", "0.1 1.2", "5 sets", "5 sets"]})


def test_heatmap_layer_by_head_and_by_position():
    fig = figures.patching_heatmap(sweep("denoising"), "z", "denoising")
    z = fig.data[0].z
    assert z.shape == (2, 3) and z[1][2] == pytest.approx(0.5)
    assert fig.data[0].zmid == 0
    pos = figures.patching_heatmap(resid_sweep("resid_pre"))
    assert pos.data[0].z.shape == (2, 4) and list(pos.data[0].x) == ["0", "1", "2", "3"]
    assert pos.layout.xaxis.title.text == "position"
    with pytest.raises(ValueError, match="no rows"):
        figures.patching_heatmap(sweep("denoising"), "q")


def test_every_causal_figure_states_its_sign_convention():
    den = figures.patching_heatmap(sweep("denoising"), "z", "denoising")
    assert "1 = restores the clean metric" in den.layout.title.text
    assert den.data[0].colorbar.title.text == "normalized effect"
    noi = figures.patching_heatmap(sweep("noising", -1.0), "z", "noising")
    assert "-1 = removes the whole clean - corrupted gap" in noi.layout.title.text
    pos = figures.patching_heatmap(resid_sweep("resid_pre"))
    assert "denoising (clean into corrupted run)" in pos.layout.title.text
    df = pd.concat([sweep("denoising"), sweep("attribution_denoising", scale=2.0)])
    assert "1 = restores the clean metric" in figures.attribution_scatter(df).layout.title.text
    abl = figures.ablation_table_figure(impairment_table())
    assert "> 0 = the set matters" in abl.layout.title.text


def test_attribution_scatter_reports_correlation():
    df = pd.concat([sweep("denoising"), sweep("attribution_denoising", scale=2.0)])
    fig = figures.attribution_scatter(df)
    assert "r = 1.000" in fig.layout.title.text
    assert list(fig.data[0].y) == pytest.approx([2 * v for v in fig.data[0].x])


def test_ablation_figure_groups_sets():
    fig = figures.ablation_table_figure(impairment_table())
    assert [t.name.split(" ")[0] for t in fig.data] == ["top_recall", "random_2"]
    assert list(fig.data[0].y) == [0.05, 0.7]


def fake_analysis(with_paths=True) -> CircuitAnalysis:
    den, noi = sweep("denoising"), sweep("noising", -1.0)
    attr = sweep("attribution_denoising", 0.9)
    parts = [den, noi, attr, resid_sweep("resid_pre"), resid_sweep("attn_out"),
             resid_sweep("mlp_out")]
    if with_paths:
        path = sweep("noising", component="path_z").assign(receivers="logits")
        parts.append(path)
    roles = pd.DataFrame({"role": ["name_mover"], "layer": [1], "head": [2], "effect": [-0.5],
                          "normalized_effect": [-0.4], "receivers": ["logits"]})
    imp = ImpairmentResult(impairment_table(), {"top_recall": [(0, 1), (1, 2)]}, den)
    return CircuitAnalysis(CircuitConfig(task="ioi", n=8), "toy", pd.DataFrame(
        {"run": ["clean", "corrupted"], "accuracy": [0.9, 0.1], "logit_diff": [2.0, -1.0]}),
        pd.concat(parts, ignore_index=True), 0.987, top_head_table(den, noi, attr, 2), roles,
        imp, None, "no SAE found for layer 1")


def test_html_is_self_contained_and_offline():
    page = render_html(fake_analysis())
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    # plotly.js is inlined exactly once; no script is loaded from anywhere
    assert not re.search(r"<script[^>]+src\s*=", page, flags=re.I)
    assert "position: token of clean prompt 0" in page  # the position axes carry tokens
    assert not re.search(r"src\s*=\s*['\"]https?://", page, flags=re.I)
    assert len(re.findall(r"<script[^>]*>", page)) >= 9  # the library + one per figure
    assert page.count("Plotly.newPlot") == 8  # 5 heatmaps, scatter, 1 path heatmap, ablation
    assert len(page) > 3_000_000  # the ~3.5 MB plotly.js bundle itself
    assert "no SAE found for layer 1" in page and "r = 0.987" in page


def test_markdown_summary():
    md = render_markdown(fake_analysis(with_paths=False))
    assert md.startswith("# Circuit report: toy / ioi")
    # heads as L1H2, receivers in words, impairment sets in L1H2 notation too
    assert "| name_mover | L1H2 | -0.5 | -0.4 | the logits (direct paths) |" in md
    assert "| L1H2 | 0.5 | -0.5 | 0.45 |" in md  # top head 1.2: den, noi, attr
    assert "| recall | top_recall | 2 | 0.8 | 0.1 | 0.7 | 0.0 | L0H1 L1H2 |" in md
    # the readout comes first and is made of the numbers below it
    assert md.index("## Readout") < md.index("## Accuracy and logit difference")
    assert "answers 90% of the clean prompts" in md and "2.00 on the clean" in md
    assert "restores most for L1H2 (0.50) and L1H1 (0.40)" in md and "r = 0.987" in md
    assert "changes recall accuracy from 0.80 to 0.10 (drop +0.70; random sets of 2: +0.05" in md
    assert markdown_table(pd.DataFrame({"a|b": [1]})) == "| a\\|b |\n|---|\n| 1 |"


@pytest.mark.slow
def test_report_cli_end_to_end_on_organism(tmp_path, capsys):
    """`attnlab report circuit` writes a complete run from the shipped organism."""
    from analyses.cli.main import main
    from data.store import RunStore

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(["report", "circuit", "--model", "organism", "--task", "ioi", "--n", "8",
                   "--n-random", "1", "--top-k", "2", "--runs-dir", str(tmp_path / "runs"),
                   "--out", str(tmp_path / "out"), "--device", "cpu"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    runs = RunStore(tmp_path / "runs").list_runs()
    assert list(runs.status) == ["complete"]
    run = RunStore(tmp_path / "runs").open_run(runs.run_id[0])
    patching = run.read_table("patching")
    assert {"z", "resid_pre", "attn_out", "mlp_out", "path_z"} <= set(patching.component)
    assert len(run.read_table("impairment")) == 4 * 4  # tasks x (3 top sets + random)
    page = (tmp_path / "out" / "report.html").read_text()
    assert not re.search(r"<script[^>]+src\s*=", page, flags=re.I)
    assert (run.path / "report.md").read_text().startswith("# Circuit report: organism / ioi")
    assert "report.html" in capsys.readouterr().out


def test_sae_features_of_top_heads_use_the_shipped_sae(organism):
    """The report's SAE step encodes hook_z through saes.encode (both shapes of x)."""
    from analyses.causal.circuit import sae_features
    from data.tasks import load_task
    from saes.encode import encode
    from saes.io import load_shipped

    ds = load_task("ioi", n=8, seed=3)
    top = pd.DataFrame({"layer": [0, 0], "head": [2, 1]})
    df, notes = sae_features(organism, ds, top, n_features=3)
    assert "layer 0: shipped SAE" in notes
    assert len(df) == 6 and set(df["head"]) == {1, 2}
    sae = load_shipped("organism", 0)
    _, cache = organism.model.run_with_cache(ds.clean_tokens, names_filter="blocks.0.attn.hook_z")
    z = cache["blocks.0.attn.hook_z"][:, -1]  # (batch, head, d_head)
    acts = encode(sae, z.flatten(-2), impl="torch").acts
    expected = acts[:, df["feature"].tolist()].mean(0)
    assert torch.allclose(torch.tensor(df["mean_act"].to_numpy(), dtype=expected.dtype),
                          expected, atol=1e-5)
