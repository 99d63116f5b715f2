"""Organism training: resume-after-interrupt reproducibility, the fast twin vs
TransformerLens, and artefact save/load errors (tiny configs, seconds each)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from data.organism.config import ModelConfig, preset
from data.organism.load import OrganismArtefactError, assemble, load_organism
from data.organism.model import build_model
from data.organism.net import OrganismNet, to_hooked_state_dict
from data.organism.train import log_steps, lr_at, train


def _weights(folder):
    return load_file(str(folder / "organism.safetensors"))


def test_resume_after_interrupt_matches_uninterrupted(tmp_path):
    mc, tc = preset("tiny")
    full = train(mc, tc, tmp_path / "full", progress=False)
    assert full.finished and full.step == tc.steps
    part = train(mc, tc, tmp_path / "cut", stop_at=tc.steps // 2 + 1, progress=False)
    assert not part.finished and part.step == tc.steps // 2 + 1
    assert not (tmp_path / "cut" / "organism.safetensors").exists()
    resumed = train(mc, tc, tmp_path / "cut", resume=True, progress=False)
    assert resumed.finished
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    # the weights moved: a run that silently skipped steps would also "match" at step 0
    init = load_file(str(tmp_path / "full" / "checkpoints" / "step_000000.safetensors"))
    assert not torch.allclose(init["embed.W_E"], a["embed.W_E"])
    with pytest.raises(ValueError, match="other configs"):
        train(mc, replace(tc, lr=tc.lr * 2), tmp_path / "cut", resume=True, progress=False)


@pytest.mark.parametrize("positional", ["learned", "rotary"])
def test_twin_net_equals_hooked_transformer(positional):
    cfg = ModelConfig(n_layers=2, d_model=48, n_heads=4, d_mlp=96, positional=positional)
    net = OrganismNet(cfg, 40)
    for p in net.parameters():
        p.data.normal_(0, 0.3)  # far from init so every weight matters
    model = build_model(cfg, 40, seed=0)
    model.load_state_dict(to_hooked_state_dict(net), strict=False)
    tokens = torch.randint(0, 40, (3, 17))
    torch.testing.assert_close(model(tokens), net(tokens), atol=1e-4, rtol=1e-4)


def test_schedule_and_log_steps():
    _, tc = preset("default")
    marks = log_steps(tc.steps, tc.n_checkpoints)
    assert marks[0] == 0 and marks[-1] == tc.steps and len(marks) >= tc.n_checkpoints
    assert lr_at(0, tc) < lr_at(tc.warmup, tc) == pytest.approx(tc.lr)
    assert lr_at(tc.steps, tc) == pytest.approx(tc.lr * tc.lr_min_frac)


def test_artefacts_roundtrip_and_errors(tmp_path):
    mc, tc = preset("tiny")
    train(mc, tc, tmp_path, progress=False)
    model = load_organism(path=tmp_path)
    vocab = model.tokenizer.convert_ids_to_tokens(list(range(model.cfg.d_vocab)))
    text = f"when {vocab[-1]} and {vocab[-2]}"
    tokens = model.to_tokens(text)
    assert tokens[0, 0].item() == 1 and model.to_string(tokens[0]) == f"<bos> {text}"
    again = assemble(_weights(tmp_path), mc, vocab)  # independent path: raw file -> model
    torch.testing.assert_close(again(tokens), model(tokens))
    assert model.cfg.n_layers == mc.n_layers and not model.training
    (tmp_path / "organism.safetensors").write_bytes(b"\x00" * 10)  # truncated
    with pytest.raises(OrganismArtefactError, match="corrupt or truncated"):
        load_organism(path=tmp_path)
    (tmp_path / "organism.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="attnlab organism train"):
        load_organism(path=tmp_path)


def test_checkpoint_callbacks_add_their_rows_at_every_checkpoint(tmp_path):
    import pandas as pd
    from transformer_lens import HookedTransformer

    from data.organism.dynamics import PROBE_ROWS, row

    mc, tc = preset("tiny")
    seen = []

    def callback(step, model, probe):
        assert isinstance(model, HookedTransformer) and not model.training
        assert probe.tokens.shape[0] == PROBE_ROWS and probe.mask.shape == probe.tokens.shape
        seen.append(step)
        return [row(step, "probe_tokens", probe.mask.sum(), layer=0)]

    train(mc, tc, tmp_path, progress=False, on_checkpoint=[callback])
    assert seen == log_steps(tc.steps, tc.n_checkpoints)
    table = pd.read_parquet(tmp_path / "organism_dynamics.parquet")
    assert list(table.columns) == ["step", "metric", "layer", "head", "value"]
    ours = table[table.metric == "probe_tokens"]
    assert ours.step.tolist() == seen and (ours.layer == 0).all() and (ours["head"] == -1).all()
    assert {"loss", "accuracy_induction"} <= set(table.metric)
