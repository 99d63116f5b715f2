"""Every dashboard page with a SmolLM2 run selected (issue 15): SmolLM2's tables only, never the
organism's or MiniLM's, and hints that name SmolLM2's own commands.

The store holds the fixture runs of :mod:`tests.support.store` (MiniLM and organism, written
first) and SmolLM2 runs written with the same table builders at SmolLM2's size (30 layers x 9
heads, 270 heads): what matters for mixing is the model in the manifest, and the size checks
that layer x head heatmaps stay readable (one integer tick per layer, >= 18 px per row).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from data.store import RunStore
from tests.support import store as fixture
from tests.support.store import (
    CIRCUIT_RUN,
    DYNAMICS_RUN,
    PROBE_RUN,
    REDUNDANCY_RUN,
    SAE_RUN,
    add_random_sae,
    build_fixture_store,
)

SMOL_PROBE = "20260102-000000-probe-smollm2"
SMOL_PATCH = "20260102-000100-patch-smollm2"  # `attnlab patch`: patching only
SMOL_REDUNDANCY = "20260102-000200-redundancy-smollm2"  # no --heads
SMOL_SAE_TRAIN = "20260102-000300-sae-train-smollm2"
SMOL_SAE_FEATURES = "20260102-000400-sae-features-smollm2"
OTHER_RUNS = (PROBE_RUN, REDUNDANCY_RUN, CIRCUIT_RUN, SAE_RUN, DYNAMICS_RUN)
N_LAYERS, N_HEADS, SAE_LAYER = 30, 9, 15


@contextlib.contextmanager
def smollm2_size():
    """The fixture's table builders at SmolLM2's 30 layers x 9 heads."""
    saved = fixture.N_LAYERS, fixture.N_HEADS
    fixture.N_LAYERS, fixture.N_HEADS = N_LAYERS, N_HEADS
    try:
        yield
    finally:
        fixture.N_LAYERS, fixture.N_HEADS = saved


def _write(store: RunStore, run_id: str, command: str, tables: dict, config=None) -> None:
    with store.start_run(command=command, model="smollm2", run_id=run_id,
                         config=config or {}) as run:
        for name, df in tables.items():
            run.write_table(name, df)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = build_fixture_store(tmp_path_factory.mktemp("smol") / "runs", broken=False)
    store = RunStore(root)
    with smollm2_size():
        _write(store, SMOL_PROBE, "probe", {
            "entropy": fixture.entropy_table("smollm2"), "head_norms": fixture.head_norms_table(),
            "sinks": fixture.sinks_table(), "massive": fixture.massive_table(),
            "massive_summary": fixture.massive_summary_table()})
        _write(store, SMOL_PATCH, "patch", {"patching": fixture.patching_table()})
        _write(store, SMOL_REDUNDANCY, "redundancy",
               {k: v for k, v in fixture.redundancy_tables().items()
                if not k.startswith("head_importance")})
        _write(store, SMOL_SAE_TRAIN, "sae train", {})
        sae = add_random_sae(root, SMOL_SAE_TRAIN, "smollm2", layer=SAE_LAYER,
                             d_in=N_HEADS * 64)
        _write(store, SMOL_SAE_FEATURES, "sae features", fixture.sae_tables(layer=SAE_LAYER),
               config={"sae": str(sae), "layer": SAE_LAYER, "tokens": 1000})
    return root


def open_page(root: Path, page: str, run_id: str, monkeypatch) -> AppTest:
    """``page`` with ``run_id`` picked on the Runs page first (as a user does)."""
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    at = AppTest.from_file(str(app_path()), default_timeout=180).run()
    at.selectbox(key="runs_pick").select(run_id).run()
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def page_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.info]
    parts += [m.value for m in at.warning] + [c.value for c in at.code]
    parts += [m.value for m in at.caption] + [s.value for s in at.selectbox]
    parts += [h.proto.body for h in at.get("html")]
    return "\n".join(str(p) for p in parts)


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def assert_smollm2_only(at: AppTest) -> None:
    text = page_text(at)
    for other in OTHER_RUNS:
        assert other not in text, f"{other} shown beside a SmolLM2 run"
    assert "--model organism" not in text and "--model minilm" not in text


def assert_readable_heads(fig: dict) -> None:
    """A 30 x 9 heads heatmap: every layer and head an integer tick, >= 18 px per layer."""
    y, x = fig["layout"]["yaxis"], fig["layout"]["xaxis"]
    assert y["ticktext"] == [str(i) for i in range(N_LAYERS)]
    assert x["ticktext"] == [str(i) for i in range(N_HEADS)]
    assert fig["layout"]["height"] >= 18 * N_LAYERS


def test_attention_page(root, monkeypatch):
    at = open_page(root, "views/attention.py", SMOL_PROBE, monkeypatch)
    assert at.selectbox(key="attn_run").value == SMOL_PROBE
    assert_smollm2_only(at)
    heats = [f for f in figures(at) if f["data"][0]["type"] == "heatmap"]
    assert len(heats) == 3  # entropy, head norms, sinks: all 270 heads
    for fig in heats:
        assert_readable_heads(fig)
    # the run has no sink_rate table: a hint with SmolLM2's probe command, not MiniLM's
    assert "attnlab probe --model smollm2" in page_text(at)
    assert at.text_input[0].value == "smollm2"  # the live box runs the run's model


def test_massive_page(root, monkeypatch):
    at = open_page(root, "views/massive.py", SMOL_PROBE, monkeypatch)
    assert at.selectbox(key="massive_run").value == SMOL_PROBE
    assert_smollm2_only(at)
    assert [f["layout"]["title"]["text"] for f in figures(at)] == [
        "Residual-stream magnitudes per layer", "Massive activations: layer x residual dimension"]
    assert "emergence_source" not in [s.key for s in at.selectbox]  # organism training only


def test_circuits_page_never_falls_back_to_the_organism(root, monkeypatch):
    at = open_page(root, "views/circuits.py", SMOL_PATCH, monkeypatch)
    assert at.selectbox(key="circuits_run").value == SMOL_PATCH
    assert_smollm2_only(at)
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert not [t for t in titles if t.startswith("accuracy drop")]  # the organism's ablation
    assert_readable_heads(figures(at)[0])
    text = page_text(at)
    assert "has no **impairment** table; `attnlab report circuit --model smollm2 --task ioi`" \
        in text
    assert not at.get("download_button")  # the organism's report is not offered


def test_redundancy_page(root, monkeypatch):
    at = open_page(root, "views/redundancy.py", SMOL_REDUNDANCY, monkeypatch)
    assert at.selectbox(key="redundancy_run").value == SMOL_REDUNDANCY
    assert_smollm2_only(at)
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert not [t for t in titles if t.startswith("Head importance")]  # the organism run's
    assert "`attnlab redundancy --model smollm2 --heads` writes it" in page_text(at)


def test_sae_page(root, monkeypatch):
    at = open_page(root, "views/sae_features.py", SMOL_SAE_FEATURES, monkeypatch)
    label = at.selectbox(key="sae_pick").format_func(at.selectbox(key="sae_pick").value)
    assert label.startswith(f"smollm2 · layer {SAE_LAYER} · ")
    assert f"feature tables: run {SMOL_SAE_FEATURES}" in label
    assert_smollm2_only(at)
    assert [f["layout"]["title"]["text"] for f in figures(at)][0] == \
        "Feature 42: activation histogram (non-zero)"
