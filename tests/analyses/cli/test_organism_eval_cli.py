"""`attnlab organism eval` on a tiny trained organism: one row per family, seed and measure,
the baselines equal to data.organism.baselines on the same items, and bad seeds refused."""

from __future__ import annotations

import pytest

from analyses.cli.main import main
from data.organism.baselines import baseline_accuracies
from data.organism.config import preset
from data.organism.corpus import FAMILIES, make_items
from data.organism.hops import PROBES
from data.organism.train import train
from data.organism.world import make_world
from data.store import RunStore


@pytest.fixture(scope="module")
def tiny_organism(tmp_path_factory):
    mc, tc = preset("tiny")
    out = tmp_path_factory.mktemp("tiny-organism")
    train(mc, tc, out, progress=False)
    return out, make_world(tc.world_seed, tc.n_people)


def test_organism_eval_writes_model_baseline_and_hop_rows(tiny_organism, tmp_path, capsys):
    path, world = tiny_organism
    assert main(["organism", "eval", "--path", str(path), "--seeds", "3,4", "--n", "12",
                 "--runs-dir", str(tmp_path)]) == 0
    assert "organism_eval" in capsys.readouterr().out
    (run_,) = RunStore(str(tmp_path)).find_runs("organism_eval")
    table = run_.read_table("organism_eval")
    assert set(table.seed) == {3, 4} and set(table.family) == set(FAMILIES)
    assert table.accuracy.between(0, 1).all() and (table.n == 12).all()
    model_rows = table[table.measure == "model"]
    assert len(model_rows) == 2 * len(FAMILIES)
    hops = table[table.measure.str.startswith("hop_")]
    assert sorted(set(hops.measure)) == sorted(f"hop_{p}" for p in PROBES)
    for family in ("reasoning", "ioi"):
        items = make_items(family, 12, 3, world)
        for rule, acc in baseline_accuracies(items, world).items():
            row = table[(table.family == family) & (table.seed == 3) & (table.measure == rule)]
            assert row.accuracy.item() == pytest.approx(acc)


def test_organism_eval_refuses_bad_seeds(tiny_organism, tmp_path, capsys):
    path, _ = tiny_organism
    assert main(["organism", "eval", "--path", str(path), "--seeds", "a,b",
                 "--runs-dir", str(tmp_path)]) == 2
    assert "--seeds" in capsys.readouterr().err
