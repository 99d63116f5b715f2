"""`attnlab sae ...` end to end on MiniLM and its shipped SAE (writes runs, checks tables)."""

from __future__ import annotations

import pytest

from analyses.cli.main import main
from data.schemas import validate
from data.store import RunStore


@pytest.mark.slow
def test_sae_eval_and_features_write_valid_runs(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["sae", "list"]) == 0
    assert "minilm" in capsys.readouterr().out
    assert main(["sae", "eval", "--model", "minilm", "--layer", "3", "--runs-dir", runs,
                 "--device", "cpu", "--eval-tokens", "300"]) == 0
    assert "embedding cosine with SAE" in capsys.readouterr().out
    assert main(["sae", "features", "--model", "minilm", "--layer", "3", "--runs-dir", runs,
                 "--device", "cpu", "--tokens", "300", "--features", "0,1,2,3,4,5,6,7",
                 "--top", "3"]) == 0
    listing = RunStore(runs).list_runs()
    assert set(listing.status) == {"complete"} and len(listing) == 2
    feat_run = RunStore(runs).open_run(listing[listing.command == "sae features"].run_id.iloc[0])
    for name in ("sae_feature_examples", "sae_feature_hist", "sae_feature_heads",
                 "sae_logit_effects", "sae_head_summary", "sae_head_features"):
        validate(name, feat_run.read_table(name))
    heads = feat_run.read_table("sae_feature_heads")
    assert set(heads.feature) <= set(range(8)) and set(heads["head"]) == set(range(12))
    ev_run = RunStore(runs).open_run(listing[listing.command == "sae eval"].run_id.iloc[0])
    ev = ev_run.read_table("sae_eval").set_index("metric").value
    assert ev["l0"] == 32 and 0 < ev["cos_sae"] <= 1


def test_sae_cli_bad_input_is_one_clean_error(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    code = main(["sae", "eval", "--model", "minilm", "--layer", "5", "--runs-dir", runs,
                 "--device", "cpu"])
    assert code == 2
    assert "no shipped SAE for 'minilm' layer 5" in capsys.readouterr().err
