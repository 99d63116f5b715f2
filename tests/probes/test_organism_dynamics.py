"""The organism's dynamics statistics are the probes' own: `attnlab organism train` on the tiny
preset writes entropy and massive-activation rows equal to `run_probes` on the same rows."""

from __future__ import annotations

import pandas as pd
import pytest
from safetensors.torch import load_file

from data.organism.config import preset
from data.organism.dynamics import COLUMNS, eval_rows
from data.organism.load import assemble
from data.organism.train import log_steps
from data.organism.world import make_world
from probes.models import LoadedModel
from probes.pipeline import run_probes


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny organism trained through the CLI (the command that wires the callbacks)."""
    from analyses.cli.main import main

    out = tmp_path_factory.mktemp("organism")
    assert main(["organism", "train", "--config", "tiny", "--out", str(out),
                 "--threads", "1"]) == 0
    return out


def test_cli_training_writes_the_probe_statistics(trained):
    mc, tc = preset("tiny")
    table = pd.read_parquet(trained / "organism_dynamics.parquet")
    assert list(table.columns) == list(COLUMNS)
    steps = log_steps(tc.steps, tc.n_checkpoints)
    for metric, per_step in [("loss", 1), ("massive_max", mc.n_layers),
                             ("massive_ratio", mc.n_layers),
                             ("entropy", mc.n_layers * mc.n_heads)]:
        counts = table[table.metric == metric].groupby("step").size()
        assert counts.index.tolist() == steps and (counts == per_step).all(), metric


def test_dynamics_rows_equal_run_probes_on_the_checkpoint(trained):
    mc, tc = preset("tiny")
    world = make_world(tc.world_seed, tc.n_people)
    step = tc.steps
    weights = load_file(str(trained / "checkpoints" / f"step_{step:06d}.safetensors"))
    model = assemble(weights, mc, world.vocab)
    probe = eval_rows(world, mc, tc).probe
    prompts = [" ".join(world.vocab[i] for i in ids[1:int(n)])  # tokenize adds the <bos>
               for ids, n in zip(probe.tokens.tolist(), probe.mask.sum(1).tolist())]
    loaded = LoadedModel(model=model, tokenizer=model.tokenizer, kind="decoder", name="organism")
    tables = run_probes(loaded, prompts, what=("entropy", "massive"))
    got = pd.read_parquet(trained / "organism_dynamics.parquet").query("step == @step")
    summary = tables["massive_summary"].pivot(index="layer", columns="stat", values="value")
    for metric, stat in [("massive_max", "top1_max"), ("massive_ratio", "ratio")]:
        ours = got[got.metric == metric].set_index("layer").value.sort_index()
        assert ours.tolist() == pytest.approx(summary[stat].sort_index().tolist(), rel=1e-5)
    mean = tables["entropy"].query("stat == 'mean'").set_index(["layer", "head"]).value
    ours = got[got.metric == "entropy"].set_index(["layer", "head"]).value
    assert ours.sort_index().tolist() == pytest.approx(mean.sort_index().tolist(), rel=1e-5)
