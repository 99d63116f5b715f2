"""Model loading: MiniLM parity with HF, clear errors for models that cannot load."""

from __future__ import annotations

import time

import pytest
import torch

from probes import models
from probes.models import ModelNotAvailable, load_model
from probes.tokens import forward, tokenize

SENTENCES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over the lazy dog near the river bank.",
    "Hi",
]


def test_minilm_matches_hf_bert(minilm, minilm_hf):
    hf, tok = minilm_hf
    tokens = tokenize(minilm, SENTENCES)
    ours = forward(minilm, tokens)  # (batch, pos, d_model)
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).last_hidden_state
    assert torch.equal(tokens.ids, enc["input_ids"])
    mask = enc["attention_mask"].bool()
    assert (ours - ref)[mask].abs().max().item() <= 1e-4


def test_minilm_config_is_the_real_architecture(minilm):
    cfg = minilm.model.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.d_head, cfg.d_model) == (6, 12, 32, 384)
    assert minilm.kind == "encoder" and cfg.attention_dir == "bidirectional"


def test_unknown_model_fails_fast_with_clear_error():
    t0 = time.perf_counter()
    with pytest.raises(ModelNotAvailable, match="unknown model 'no-such-model'"):
        load_model("no-such-model")
    assert time.perf_counter() - t0 < 10


def test_known_hub_model_offline_names_model_and_fix(monkeypatch):
    monkeypatch.setattr(models, "hub_model_cached", lambda name: False)
    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ModelNotAvailable) as err:
        load_model("gpt2")
    msg = str(err.value)
    assert "'gpt2'" in msg and "cache" in msg and "HF_HOME" in msg


def test_hub_load_failure_is_wrapped(monkeypatch):
    import transformer_lens

    def boom(*a, **k):
        raise OSError("deep library failure")

    monkeypatch.setattr(models, "hub_model_cached", lambda name: True)
    monkeypatch.setattr(transformer_lens.HookedTransformer, "from_pretrained", boom)
    with pytest.raises(ModelNotAvailable, match="could not be loaded .*deep library failure"):
        load_model("gpt2")


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_model_name(bad):
    with pytest.raises(ModelNotAvailable, match="non-empty"):
        load_model(bad)


def test_model_statuses_report_minilm_and_organism():
    by_name = {s.name: s for s in models.model_statuses()}
    assert by_name["minilm"].available
    assert by_name["organism"].available, by_name["organism"].detail
    assert "gpt2" in by_name
