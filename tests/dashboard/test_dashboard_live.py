"""The dashboard's live views (a prompt typed in a page) against independent computations.

Attention patterns are checked against the HF ``BertModel``'s own ``output_attentions`` for
the same MiniLM weights; SAE features against SAE-Lens' ``sae.encode`` on hook_z captured by
TransformerLens' ``run_with_cache``.
"""

from __future__ import annotations

import base64
import json
import re

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


def _array(z) -> np.ndarray:
    """A figure array (plotly >= 6 sends arrays base64-typed)."""
    if isinstance(z, dict):
        shape = tuple(int(n) for n in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.asarray(z, dtype=float)


def _heatmap_z(chart) -> np.ndarray:
    """The z grid of a chart's first trace."""
    return _array(json.loads(chart.proto.spec)["data"][0]["z"])


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
    assert len(charts) == n_before + 2  # every head of the layer, then the chosen head enlarged
    z = _heatmap_z(charts[-1]).astype(float)
    ref = _hf_pattern(*minilm_hf, layer=3, head=5)
    assert z.shape == tuple(ref.shape)
    np.testing.assert_allclose(z, ref.numpy(), atol=1e-5)
    grid = json.loads(charts[-2].proto.spec)
    assert [t["text"] for t in grid["layout"]["annotations"]] == [f"L3H{h}" for h in range(12)]
    panel = grid["data"][5]  # L3H5's panel holds the same pattern, with token hover
    np.testing.assert_allclose(_array(panel["z"]), ref.numpy(), atol=1e-5)
    tokens = minilm_hf[1].convert_ids_to_tokens(minilm_hf[1](PROMPT)["input_ids"])
    assert list(panel["x"]) == [f"{i}:{t}" for i, t in enumerate(tokens)]
    assert panel["text"][2][1] == f"query 2 {tokens[2]!r}<br>key 1 {tokens[1]!r}"


def test_sae_page_encodes_prompt_like_sae_lens(store_root, monkeypatch, minilm):
    at = _page(store_root, "views/sae_features.py", monkeypatch)
    # shipped SAEs are listed too: take the fixture's (options are SAE folders)
    pick = at.selectbox(key="sae_pick")
    mine = [i for i, label in enumerate(pick.options) if f"run {PROBE_RUN} · sae/layer0" in label]
    assert len(mine) == 1, pick.options
    pick.set_value(mine[0]).run()
    at.text_input[0].set_value(PROMPT)
    at.button[0].click().run()
    assert not at.exception and not at.error
    feats = at.dataframe[0].value
    # feature ids are links to the feature (?feature=N)
    assert feats["feature"].str.match(r"^/sae_features\?feature=\d+$").all()
    feats["feature"] = feats["feature"].str.rsplit("=", n=1).str[-1].astype(int)
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
    # the feature on the prompt: per-token activations and an exact DFA split (no tables here)
    feature = int(top["feature"].iloc[0])
    at.number_input(key="sae_feature_id").set_value(feature).run()
    assert not at.exception and not at.error
    q = int(ref[:, feature].argmax())  # active there, so SAE-Lens' value is the pre-activation
    chart = next(c for c in at.get("plotly_chart") if "source position" in c.proto.spec)
    spec = json.loads(chart.proto.spec)
    cells = _array(spec["data"][0]["z"]).astype(float)  # (head, key_pos)
    assert f"at query {q} " in spec["layout"]["title"]["text"]
    caption = next(c.value for c in at.caption if "Exact split" in c.value)
    offset, bias = (float(v) for v in re.findall(r"\(([-\d.e]+)\)", caption)[:2])
    tol = 5e-3 * (abs(offset) + abs(bias)) + 1e-4  # the caption rounds both to 3 digits
    assert cells.sum() + offset + bias == pytest.approx(float(ref[q, feature]), abs=tol)
    shown = [h.proto.body for h in at.get("html") if "attnlab-prompt" in h.proto.body][0]
    assert shown.count("rgba(245,133,24") == int((ref[:, feature] > 0).sum())
