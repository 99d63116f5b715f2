"""The dashboard's live views (a prompt typed in a page) against independent computations.

Attention patterns are checked against the HF ``BertModel``'s own ``output_attentions`` for
the same MiniLM weights; SAE features against SAE-Lens' ``sae.encode`` on hook_z captured by
TransformerLens' ``run_with_cache``.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from tests.support.store import PROBE_RUN, add_random_sae, build_fixture_store

pytestmark = pytest.mark.slow
PROMPT = "The cat sat on the mat."


@pytest.fixture(scope="module")
def store_root(tmp_path_factory):
    root = build_fixture_store(tmp_path_factory.mktemp("live") / "runs", broken=False)
    add_random_sae(root, PROBE_RUN, "minilm", layer=0, d_in=384)
    return root


def _page(root, page, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    monkeypatch.setenv("ATTNLAB_DEVICE", "cpu")
    at = AppTest.from_file(str(app_path()), default_timeout=120).run()
    return at.switch_page(page).run()


def _heatmap_z(chart) -> np.ndarray:
    """The z grid of a chart's first trace (plotly >= 6 sends arrays base64-typed)."""
    z = json.loads(chart.proto.spec)["data"][0]["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.asarray(z, dtype=float)


def _hf_pattern(hf, tok, layer: int, head: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_head)) of one head, from the HF model's own modules."""
    with torch.no_grad():
        out = hf(**tok(PROMPT, return_tensors="pt"), output_hidden_states=True)
        x = out.hidden_states[layer][0]  # (pos, d_model): input of layer `layer`
        attn = hf.encoder.layer[layer].attention.self
        d_head = x.shape[-1] // hf.config.num_attention_heads
        sl = slice(head * d_head, (head + 1) * d_head)
        q, k = attn.query(x)[:, sl], attn.key(x)[:, sl]  # (pos, d_head)
        return torch.softmax(q @ k.T / d_head**0.5, dim=-1)


def test_attention_viewer_matches_hf_attentions(store_root, monkeypatch, minilm_hf):
    at = _page(store_root, "views/attention.py", monkeypatch)
    n_before = len(at.get("plotly_chart"))
    at.text_input[0].set_value("minilm")
    at.text_input[1].set_value(PROMPT)
    at.button[0].click().run()
    at.number_input(key="attn_layer").set_value(3).run()
    at.number_input(key="attn_head").set_value(5).run()
    assert not at.exception and not at.error
    charts = at.get("plotly_chart")
    assert len(charts) == n_before + 1
    z = _heatmap_z(charts[-1]).astype(float)
    ref = _hf_pattern(*minilm_hf, layer=3, head=5)
    assert z.shape == tuple(ref.shape)
    np.testing.assert_allclose(z, ref.numpy(), atol=1e-5)


def test_sae_page_encodes_prompt_like_sae_lens(store_root, monkeypatch, minilm):
    at = _page(store_root, "views/sae_features.py", monkeypatch)
    # shipped SAEs are listed too: take the fixture's (options are SAE folders)
    at.selectbox(key="sae_pick").select(str(store_root / PROBE_RUN / "sae" / "layer0")).run()
    at.text_input[0].set_value(PROMPT)
    at.button[0].click().run()
    assert not at.exception and not at.error
    feats = at.dataframe[0].value
    from saes.io import load_sae

    sae = load_sae(store_root / PROBE_RUN / "sae" / "layer0")
    ids = minilm.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    _, cache = minilm.model.run_with_cache(ids, names_filter="blocks.0.attn.hook_z")
    with torch.no_grad():
        ref = sae.encode(cache["blocks.0.attn.hook_z"][0])  # (pos, d_sae)
    top = feats[feats["rank"] == 0].set_index("pos")
    for pos, row in top.iterrows():
        assert row["feature"] == int(ref[pos].argmax())
        assert row["activation"] == pytest.approx(float(ref[pos].max()), rel=1e-4, abs=1e-5)
    assert len(top) == int((ref.max(-1).values > 0).sum())
