"""`attnlab massive ablate | sinks` on the organism (small samples), and their argument errors."""

from __future__ import annotations

import pytest
import torch

from data.store import RunStore
from probes.models import unwrap
from tests.analyses.cli.clihelp import (
    assert_one_line_error,
    forbid_model_loads,
    only_failed_runs,
    run_cli,
    use_model,
)

SMALL = ["--heldout-tokens", "300", "--n", "4", "--batch-size", "32"]


def one_run(root):
    runs = RunStore(root).list_runs()
    assert runs["status"].tolist() == ["complete"]
    return RunStore(root).open_run(runs["run_id"][0])


def test_ablate_writes_every_condition(organism, tmp_path, capsys, monkeypatch):
    use_model(monkeypatch, organism)
    rc, out, err = run_cli(["massive", "ablate", "--model", "organism", "--runs-dir",
                            str(tmp_path), "--massive-abs", "20", "--massive-ratio", "20",
                            "--reference-tokens", "300", "--draws", "2", *SMALL], capsys)
    assert rc == 0, err
    run = one_run(tmp_path)
    table = run.read_table("massive_ablation")
    sites = run.read_table("massive_sites")
    assert run.manifest["massive_layer"] == int(sites["layer"].iloc[0])
    # BOS carries one (measured: dim 62 at layer 5 on the retrained organism, with that dim on
    # most other tokens too); position 0 of a causal model is the same in every sequence, so
    # each BOS site's mean must equal BOS's own residual, computed here by TransformerLens
    bos = sites[sites["token"] == "<bos>"]
    assert len(bos) >= 1 and set(sites["layer"]) == {run.manifest["massive_layer"]}
    model = unwrap(organism)
    _, cache = model.run_with_cache(torch.tensor([[int(bos["token_id"].iloc[0])]]))
    resid = cache[f"blocks.{run.manifest['massive_layer']}.hook_resid_post"][0, 0]
    assert bos["mean"].tolist() == pytest.approx(resid[bos["dim"].tolist()].tolist(), rel=1e-4)
    model_wide = table[table["layer"] == -1]
    assert sorted(set(zip(model_wide["condition"], model_wide["draw"]))) == [
        ("mean", 0), ("none", 0), ("random", 0), ("random", 1), ("zero", 0)]
    metrics = set(model_wide["metric"])
    assert {"lm_loss", "perplexity", "n_patched", "acc_ioi", "acc_mean", "sink_rate"} <= metrics
    patched = model_wide[model_wide["metric"] == "n_patched"].set_index("condition")["value"]
    assert patched["none"] == 0 and patched["zero"] > 0
    assert patched["zero"] == patched["mean"] == patched["random"].iloc[0]
    per_layer = table[(table["metric"] == "sink_rate") & (table["layer"] >= 0)]
    assert sorted(per_layer["layer"].unique()) == list(range(organism.cfg.n_layers))
    assert f"patched at layer {run.manifest['massive_layer']}" in out


def test_sinks_removes_per_layer_and_per_head(organism, tmp_path, capsys, monkeypatch):
    use_model(monkeypatch, organism)
    rc, out, err = run_cli(["massive", "sinks", "--model", "organism", "--runs-dir",
                            str(tmp_path), "--heads", "L3H0", "--top-heads", "1", *SMALL],
                           capsys)
    assert rc == 0, err
    run = one_run(tmp_path)
    dec = run.read_table("sink_decomposition")
    removal = run.read_table("sink_removal")
    n_layers, n_heads = organism.cfg.n_layers, organism.cfg.n_heads
    assert len(dec) == n_layers * n_heads * 11
    layers = removal[removal["scope"] == "layer"]
    assert list(layers["layer"]) == list(range(n_layers)) and (layers["head"] == -1).all()
    heads = removal[removal["scope"] == "head"]
    assert (3, 0) in set(zip(heads["layer"], heads["head"]))
    assert (removal["delta"] == removal["value"] - removal["baseline"]).all()
    assert (removal["metric"] == "lm_loss").all() and "lm_loss unpatched" in out


@pytest.mark.parametrize("argv,needle", [
    (["massive", "ablate", "--draws", "0"], "--draws"),
    (["massive", "ablate", "--heldout-tokens", "1"], "--heldout-tokens"),
    (["massive", "sinks", "--no-layers"], "--no-layers"),
    (["massive", "sinks", "--heads", "L0H1,0.1"], "L0H1"),
])
def test_bad_arguments_fail_before_any_model(argv, needle, tmp_path, capsys, monkeypatch):
    forbid_model_loads(monkeypatch)
    rc, _, err = run_cli([*argv, "--runs-dir", str(tmp_path)], capsys)
    assert_one_line_error(rc, err, needle, context=argv)
    assert only_failed_runs(tmp_path)


def test_no_massive_activation_is_a_one_line_error(organism, tmp_path, capsys, monkeypatch):
    use_model(monkeypatch, organism)
    rc, _, err = run_cli(["massive", "ablate", "--model", "organism", "--runs-dir",
                          str(tmp_path), "--reference-tokens", "200", *SMALL], capsys)
    assert_one_line_error(rc, err, "no massive activation", "--massive-ratio")
    assert only_failed_runs(tmp_path)
