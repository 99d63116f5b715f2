"""`attnlab patch` / `attnlab ablate` write runs; the IOI ABC corruption is built right."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from analyses.causal.ioi import abc_pair
from analyses.causal.path_patching import Receiver
from analyses.cli.commands.patch_cmd import parse_receivers


def test_parse_receivers():
    assert parse_receivers("logits") == ()
    assert parse_receivers("3.1q, 2.0") == (Receiver(3, 1, ("q",)),
                                           Receiver(2, 0, ("q", "k", "v")))
    assert parse_receivers("1.2kv") == (Receiver(1, 2, ("k", "v")),)
    with pytest.raises(ValueError, match="LAYER.HEAD"):
        parse_receivers("3.x")


def test_parse_receivers_takes_both_head_notations_and_refuses_repeats():
    assert parse_receivers("L3H1q,L2H0") == parse_receivers("3.1q,2.0")
    assert parse_receivers("L2H1(kv)") == (Receiver(2, 1, ("k", "v")),)
    with pytest.raises(ValueError, match="listed twice"):
        parse_receivers("L2H0q,2.0k")


def test_abc_pair_replaces_both_subject_tokens():
    # BOS=0; names are 10..19; "9 A 7 B 8 S 6 S 5" style rows: S = 12 / 14 repeated
    clean = torch.tensor([[0, 11, 7, 12, 8, 12, 5], [0, 14, 7, 13, 8, 14, 5]])
    ds = SimpleNamespace(clean_tokens=clean, answer_ids=torch.tensor([11, 13]))
    pair = abc_pair(ds, name_ids=set(range(10, 20)), seed=0)
    diff = (pair.clean != pair.corrupted).nonzero().tolist()
    assert diff == [[0, 3], [0, 5], [1, 1], [1, 5]]
    for b, (p1, p2) in enumerate([(3, 5), (1, 5)]):
        new = {int(pair.corrupted[b, p1]), int(pair.corrupted[b, p2])}
        assert len(new) == 2 and not new & {int(clean[b, p1]), int(ds.answer_ids[b])}
    logits = torch.zeros(2, 7, 20)
    logits[0, -1, 11], logits[0, -1, 12] = 3.0, 1.0  # IO 11 vs S 12
    assert pair.metric(logits)[0].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="repeated name"):
        abc_pair(SimpleNamespace(clean_tokens=clean[:, :4], answer_ids=ds.answer_ids),
                 set(range(10, 20)))


@pytest.mark.slow
def test_patch_and_ablate_commands_write_runs(tmp_path, capsys, organism):
    from analyses.cli.main import main
    from data.store import RunStore

    runs = str(tmp_path / "runs")
    common = ["--runs-dir", runs, "--device", "cpu", "--model", "organism"]
    assert main(["patch", *common, "--task", "recall", "--n", "8", "--component", "z",
                 "--method", "attribution"]) == 0
    out = capsys.readouterr().out
    assert "corr(attribution, exact) = " in out
    assert "Moving model to device" not in out and "Changing model dtype" not in out
    # the header: pairs, both baselines (checked against a plain forward pass), the engine
    import re

    from analyses.causal.task_sets import load_model_task
    from data.tasks import logit_diff

    ds = load_model_task("organism", "recall", 8, 0)
    with torch.no_grad():
        want = [float(logit_diff(organism.model(t), ds).mean())
                for t in (ds.clean_tokens, ds.corrupted_tokens)]
    m = re.search(r"8 prompt pairs of task recall \(seed 0\); metric logit_diff \(mean over "
                  r"pairs\): clean (\S+), corrupted (\S+) \(gap \S+\); engine (\w+)", out)
    assert m, out
    assert [float(m[1]), float(m[2])] == pytest.approx(want, abs=1e-3)
    assert m[3] in ("fast", "attribution")
    assert "normalized_effect = effect / gap: 1 = the patch restores the clean metric" in out
    assert main(["ablate", *common, "--task", "recall", "--n", "8", "--heads", "0.1",
                 "--sublayers", "mlp0", "--method", "zero"]) == 0
    assert main(["patch", *common, "--component", "path", "--receivers", "bogus"]) == 2
    store = RunStore(runs)
    listed = store.list_runs()
    assert sorted(listed.command) == ["ablate", "patch"]  # bad --receivers: checked before a run
    done = listed[listed.status == "complete"]
    tables = {c: store.open_run(r).read_table("patching" if c == "patch" else "impairment")
              for r, c in zip(done.run_id, done.command)}
    assert set(tables["patch"].method) == {"denoising", "attribution_denoising"}
    assert len(tables["patch"]) == 2 * organism.cfg.n_layers * organism.cfg.n_heads
    assert tables["ablate"].heads.iloc[0] == "L0H1 mlp0"


def test_path_baselines_are_recovered_from_the_table():
    """clean 3.0, corrupted -1.0 (gap 4): a denoising row patched to 1.0 has effect 2.0 and
    normalized effect 0.5; a noising row patched to 2.0 has effect -1.0, normalized -0.25."""
    import pandas as pd

    from analyses.cli.commands.patch_cmd import path_baselines

    den = pd.DataFrame({"patched_metric": [1.0, -1.0], "effect": [2.0, 0.0],
                        "normalized_effect": [0.5, 0.0]})
    assert path_baselines(den, "denoising") == pytest.approx((3.0, -1.0))
    noi = pd.DataFrame({"patched_metric": [2.0], "effect": [-1.0], "normalized_effect": [-0.25]})
    assert path_baselines(noi, "noising") == pytest.approx((3.0, -1.0))
