"""SAE features page: activation-quantile band examples under the top examples, and the
one-line note for a run written before bands existed (the fixture store's SAE run)."""

from __future__ import annotations

import re

import pandas as pd
from streamlit.testing.v1 import AppTest

from data.store import RunStore
from tests.dashboard.test_dashboard_pages import assert_clean, open_page
from tests.support.store import SAE_FEATURES, build_fixture_store, sae_tables


def bands_table() -> pd.DataFrame:
    """Two bands of feature 7 (top 2.0): (1, 2] with two examples, (0, 0.5] with one."""
    rows = [(1, 1.0, 2.0, 5, 0, 1.8, "hi0"), (1, 1.0, 2.0, 5, 1, 1.2, "hi1"),
            (0, 0.0, 0.5, 9, 0, 0.4, "lo0")]
    return pd.DataFrame([{"feature": min(SAE_FEATURES), "band": b, "band_low": lo,
                          "band_high": hi, "band_count": n, "rank": r, "activation": a,
                          "token": t, "context": f"x [[{t}]] y", "prompt_idx": 0, "pos": 1}
                         for b, lo, hi, n, r, a, t in rows])


def open_sae_page(root, monkeypatch) -> AppTest:
    at = open_page(root, "views/sae_features.py", monkeypatch)
    at.selectbox(key="sae_feature_pick").select(min(SAE_FEATURES)).run()
    assert_clean(at)
    return at


def test_band_examples_are_shown_under_their_activation_range(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    with store.start_run(command="sae features", model="organism") as run:
        for name, df in {**sae_tables(), "sae_feature_bands": bands_table()}.items():
            run.write_table(name, df)
    at = open_sae_page(store.root, monkeypatch)
    blocks = [h.proto.body for h in at.get("html") if "attnlab-bands" in h.proto.body]
    assert len(blocks) == 1
    body = blocks[0]
    # highest band first, each labelled with its range and its count
    assert [m for m in re.findall(r"Activation ([\d.]+ – [\d.]+)", body)] == ["1 – 2", "0 – 0.5"]
    assert "(5 activations in this band; 2 shown" in body and "(9 activations" in body
    tokens = re.findall(r"rgba\(245,133,24,([\d.]+)\)[^>]*>([^<]*)</span>", body)
    # coloured by activation / the feature's top (2.0): 0.9, 0.6, 0.2
    assert [(t, float(a)) for a, t in tokens] == [("hi0", 0.9), ("hi1", 0.6), ("lo0", 0.2)]
    assert "Examples by activation band" in [s.value for s in at.subheader]


def test_a_run_without_bands_shows_top_examples_and_a_note(tmp_path, monkeypatch):
    at = open_sae_page(build_fixture_store(tmp_path / "runs", broken=False), monkeypatch)
    assert any("attnlab-examples" in h.proto.body for h in at.get("html"))
    assert not any("attnlab-bands" in h.proto.body for h in at.get("html"))
    assert any("predates activation-quantile bands" in c.value for c in at.caption)


def test_every_context_token_is_coloured_by_its_own_activation():
    import json

    from dashboard.feature_view import examples_html

    toks, acts = ["The", "<cat>", "sat", "on"], [0.0, 0.5, 2.0, 1.0]
    per_token = pd.DataFrame([{"activation": 2.0, "context": "The <cat> [[sat]] on",
                               "context_tokens": json.dumps(toks),
                               "context_acts": json.dumps(acts), "context_pos": 2}])
    body = examples_html(per_token, top=4.0)
    spans = re.findall(r'<span title="activation ([^"]+)" style="background: '
                       r'rgba\(245,133,24,([\d.]+)\)([^"]*)">([^<]*)</span>', body)
    # one span per token, in order, alpha = activation / top (0 for the inactive token)
    assert [t for *_, t in spans] == ["The", "&lt;cat&gt;", "sat", "on"]
    assert [float(a) for _, a, _, _ in spans] == [0.0, 0.125, 0.5, 0.25]
    assert [float(a) for a, *_ in spans] == acts
    assert [("border-bottom" in s) for _, _, s, _ in spans] == [False, False, True, False]
    # a row of an older run (no per-token columns) keeps the single marked token
    old = per_token.drop(columns=["context_tokens", "context_acts", "context_pos"])
    marked = re.findall(r"rgba\(245,133,24,([\d.]+)\)[^>]*>([^<]*)</span>",
                        examples_html(old, top=4.0))
    assert marked == [("0.50", "sat")]
