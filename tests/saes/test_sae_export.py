"""`saes.export`: SAEDashboard's Neuronpedia JSON, field for field, with values checked
against SAE-Lens' own encode on TransformerLens' own cache."""

from __future__ import annotations

import json

import pytest
import torch

from saes.corpus import corpus_tokens
from saes.export import ExportMeta, neuronpedia_batches, write_export
from saes.features import feature_tables
from saes.io import load_shipped

# NeuronpediaDashboardBatch / Feature / Activation .to_dict() keys, as written in SAEDashboard's
# sae_dashboard/neuronpedia/neuronpedia_dashboard.py (the DFA keys are optional there).
BATCH_KEYS = {"model_id", "layer", "sae_set", "sae_id_suffix", "features"}
FEATURE_KEYS = {
    "feature_index", "neuron_alignment_indices", "neuron_alignment_values",
    "neuron_alignment_l1", "correlated_neurons_indices", "correlated_neurons_l1",
    "correlated_neurons_pearson", "correlated_features_indices", "correlated_features_l1",
    "correlated_features_pearson", "neg_str", "neg_values", "pos_str", "pos_values",
    "frac_nonzero", "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights", "logits_hist_data_bar_values", "n_prompts_total",
    "n_tokens_in_prompt", "dataset", "decoder_weights_dist", "activations", "vector"}
ACTIVATION_KEYS = {"bin_min", "bin_max", "bin_contains", "tokens", "values",
                   "qualifying_token_index"}
LAYER, FEATURES = 1, list(range(12))


@pytest.fixture(scope="module")
def exported(organism):
    sae = load_shipped("organism", LAYER)
    tokens = corpus_tokens(organism, 800, seed=0, split="heldout")
    ft = feature_tables(organism, sae, LAYER, tokens, FEATURES, n_top=4, n_bins=5)
    meta = ExportMeta("organism", LAYER, "attnlab-att", "test corpus")
    return sae, tokens, ft, neuronpedia_batches(organism, sae, LAYER, tokens, ft, meta, 3)


def test_structure_is_saedashboards(exported):
    _, _, ft, batches = exported
    n = ft.top_examples.feature.nunique()
    assert n > 3  # enough active features for two files
    assert [len(b["features"]) for b in batches] == [3] * (n // 3) + ([n % 3] if n % 3 else [])
    for b in batches:
        assert set(b) == BATCH_KEYS and b["layer"] == LAYER and b["sae_set"] == "attnlab-att"
        for f in b["features"]:
            assert set(f) == FEATURE_KEYS
            assert all(set(a) == ACTIVATION_KEYS for a in f["activations"])
            assert all(isinstance(v, float) for v in f["pos_values"] + f["neg_values"])
            assert all(isinstance(t, str) for t in f["pos_str"] + f["neg_str"])
        json.dumps(b)  # plain JSON types only


def test_values_match_sae_lens_on_the_tl_cache(organism, exported):
    """Every example's per-token values are SAE-Lens' encode of TL's cached hook_z, and its
    qualifying token holds the activation feature_tables found; frac_nonzero is the share of
    scanned tokens where SAE-Lens' encode is positive."""
    sae, tokens, ft, batches = exported
    mask = tokens.attention_mask.bool()
    _, cache = organism.model.run_with_cache(tokens.ids, names_filter=f"blocks.{LAYER}.attn.hook_z")
    acts = sae.encode(cache[f"blocks.{LAYER}.attn.hook_z"]).detach()  # (batch, pos, d_sae)
    for f in (f for b in batches for f in b["features"]):
        idx = f["feature_index"]
        ex = ft.top_examples[ft.top_examples.feature == idx].sort_values("rank")
        assert len(f["activations"]) == len(ex)
        for a, r in zip(f["activations"], ex.itertuples()):
            n = int(tokens.lengths[r.prompt_idx])
            assert a["tokens"] == tokens.str_tokens[r.prompt_idx] and len(a["values"]) == n
            want = acts[r.prompt_idx, :n, idx]
            assert a["values"] == pytest.approx(want.tolist(), abs=1e-4)
            assert a["values"][a["qualifying_token_index"]] == pytest.approx(r.activation,
                                                                              abs=1e-4)
            assert a["bin_max"] == pytest.approx(float(ex.activation.max()), abs=1e-4)
        on = float((acts[..., idx][mask] > 0).float().mean())
        assert f["frac_nonzero"] == pytest.approx(on, abs=1e-6)
        assert sum(f["freq_hist_data_bar_heights"]) == int((acts[..., idx][mask] > 0).sum())
        assert sum(f["decoder_weights_dist"]) == pytest.approx(1.0, abs=1e-3)
        row = sae.W_dec[idx].detach()
        assert f["neuron_alignment_indices"] == row.abs().argsort(descending=True)[:3].tolist()


def test_written_files_are_the_runners(tmp_path, exported):
    _, tokens, _, batches = exported
    meta = ExportMeta("organism", LAYER, "attnlab-att", "test corpus")
    paths = write_export(tmp_path, batches, meta, [5, 9], 800)
    assert [p.name for p in paths] == [f"batch-{i}.json" for i in range(len(batches))] + [
        "skipped_indexes.json"]
    assert json.loads(paths[0].read_text()) == batches[0]
    skipped = json.loads(paths[-1].read_text())
    assert skipped == {"model_id": "organism", "layer": "1", "sae_set": "attnlab-att",
                       "log_sparsity": pytest.approx(-2.903, abs=1e-3),
                       "skipped_indexes": [5, 9]}


def test_cli_export(tmp_path, capsys):
    from analyses.cli.main import main

    n = torch.get_num_threads()
    try:
        assert main(["sae", "export", "--model", "organism", "--layer", "1", "--tokens", "300",
                     "--features", "0,1,2", "--out", str(tmp_path / "np"), "--threads", "1",
                     "--runs-dir", str(tmp_path / "runs")]) == 0
    finally:
        torch.set_num_threads(n)
    batch = json.loads((tmp_path / "np" / "batch-0.json").read_text())
    skipped = json.loads((tmp_path / "np" / "skipped_indexes.json").read_text())
    exported = [f["feature_index"] for f in batch["features"]]
    assert sorted(exported + skipped["skipped_indexes"]) == [0, 1, 2]
    assert "features in 1 batch file(s)" in capsys.readouterr().out
