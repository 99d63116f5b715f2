"""hook_z activation shards: content equals run_with_cache; resume after an interruption."""

from __future__ import annotations

import json

import pytest
import torch

import probes.activation_writer as aw
from probes.activation_writer import ActivationShards, WriterConfig, write_activations
from probes.hooks import hook_count

PROMPTS = ["The cat sat on the mat.", "A much longer sentence about the weather in the hills.",
           "Short one.", "Bees carry pollen from flower to flower.", "It rained all day.",
           "The train to Boston leaves at seven."]


def _reference(loaded, layer):
    from probes.tokens import tokenize

    rows = []
    for p in PROMPTS:
        t = tokenize(loaded, p)
        _, cache = loaded.model.run_with_cache(t.ids, one_zero_attention_mask=t.attention_mask,
                                               names_filter=f"blocks.{layer}.attn.hook_z")
        z = cache[f"blocks.{layer}.attn.hook_z"][0]  # (pos, head, d_head)
        rows.append(z.reshape(z.shape[0], -1))
    return torch.cat(rows)


@pytest.mark.slow
def test_shards_hold_hook_z_of_real_tokens(minilm, tmp_path):
    cfg = WriterConfig(layer=2, shard_tokens=20, batch_size=2)
    manifest = write_activations(minilm, PROMPTS, tmp_path / "acts", cfg)
    ref = _reference(minilm, 2)
    store = ActivationShards(tmp_path / "acts")
    assert manifest["complete"] and store.manifest["hook"] == "blocks.2.attn.hook_z"
    assert store.d_in == 12 * 32 and store.n_tokens == ref.shape[0]
    assert len(store) >= 2  # several shards
    torch.testing.assert_close(store.load_all(), ref, rtol=1e-4, atol=1e-5)
    assert hook_count(minilm.model) == 0


@pytest.mark.slow
def test_resume_after_interrupt_gives_the_same_store(minilm, tmp_path, monkeypatch):
    cfg = WriterConfig(layer=1, shard_tokens=10, batch_size=1)
    real_batches = aw.batches

    def interrupted(tokens, batch_size):
        for i, b in enumerate(real_batches(tokens, batch_size)):
            if i == 3:
                raise KeyboardInterrupt
            yield b

    monkeypatch.setattr(aw, "batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_activations(minilm, PROMPTS, tmp_path / "a", cfg)
    partial = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert not partial["complete"] and 0 < partial["prompts_done"] < len(PROMPTS)
    assert not list((tmp_path / "a").glob(".*tmp"))  # no half-written files
    monkeypatch.setattr(aw, "batches", real_batches)
    write_activations(minilm, PROMPTS, tmp_path / "a", cfg)
    torch.testing.assert_close(ActivationShards(tmp_path / "a").load_all(),
                               _reference(minilm, 1), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="prompts_sha256"):
        write_activations(minilm, PROMPTS[:-1], tmp_path / "a", cfg)


def test_reader_and_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="write_activations"):
        ActivationShards(tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        WriterConfig(layer=0, dtype="int8")
