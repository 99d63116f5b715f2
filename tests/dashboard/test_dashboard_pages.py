"""Every dashboard page under Streamlit's AppTest, against a fixture run store.

Each page is reached through the real entry file (``dashboard/app.py`` + ``st.navigation``),
so routing is tested too. Checks: no exception, no error box, the expected elements present;
an empty store and broken runs give a "how to produce it" message with the CLI command.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from data.store import RunStore
from tests.support.store import (
    CIRCUIT_RUN,
    CORRUPT_RUN,
    DYNAMICS_RUN,
    FAILED_RUN,
    PROBE_RUN,
    REDUNDANCY_RUN,
    SAE_FEATURES,
    build_fixture_store,
    massive_summary_table,
    massive_table,
    sinks_table,
)

APP = str(app_path())
PAGES = ["views/runs.py", "views/attention.py", "views/massive.py", "views/sae_features.py",
         "views/redundancy.py", "views/circuits.py"]


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> Path:
    return build_fixture_store(tmp_path_factory.mktemp("store") / "runs")


def open_page(root: Path, page: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=180).run()
    if page != "views/runs.py":
        at.switch_page(page).run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def markdown_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.info]
    parts += [m.value for m in at.warning] + [c.value for c in at.code]
    parts += [m.value for m in at.caption] + [t.value for t in at.title]
    return "\n".join(str(p) for p in parts)


def plotly_charts(at: AppTest) -> list:
    return at.get("plotly_chart")


def test_runs_page_lists_runs_and_selects_one(store_root, monkeypatch):
    at = open_page(store_root, "views/runs.py", monkeypatch)
    assert_clean(at)
    table = at.dataframe[0].value
    assert {PROBE_RUN, REDUNDANCY_RUN, CIRCUIT_RUN, FAILED_RUN, CORRUPT_RUN} <= set(
        table["run_id"])
    assert set(table.set_index("run_id").loc[[FAILED_RUN, CORRUPT_RUN], "status"]) == {
        "failed", "corrupt"}
    at.selectbox(key="runs_pick").select(PROBE_RUN).run()
    assert_clean(at)
    assert at.session_state["attnlab_run_id"] == PROBE_RUN
    links = {p.proto.label: p.proto.page for p in at.get("page_link")}
    assert set(links) == {f"{t} → open page" for t in
                          ("entropy", "head_norms", "massive", "massive_summary", "sinks",
                           "sink_rate")}
    assert links["entropy → open page"].endswith("attention")


@pytest.mark.parametrize("run_id,expected", [(FAILED_RUN, "failed"),
                                             (CORRUPT_RUN, "cannot be read")])
def test_runs_page_explains_broken_runs(store_root, monkeypatch, run_id, expected):
    at = open_page(store_root, "views/runs.py", monkeypatch)
    at.selectbox(key="runs_pick").select(run_id).run()
    assert_clean(at)
    assert expected in "\n".join(w.value for w in at.warning)


def test_runs_page_offers_report_files(store_root, monkeypatch):
    at = open_page(store_root, "views/runs.py", monkeypatch)
    at.selectbox(key="runs_pick").select(CIRCUIT_RUN).run()
    assert_clean(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert "report.html" in labels


def test_attention_page_shows_entropy_and_norms(store_root, monkeypatch):
    at = open_page(store_root, "views/attention.py", monkeypatch)
    assert_clean(at)
    charts = plotly_charts(at)
    assert len(charts) == 5  # entropy heatmap, entropy-vs-bound, head norms, sinks, sink rate
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Heads in entropy collapse"] == "1"  # the fixture has one collapsed head
    assert metrics["Queries below the bound"] == "0"
    assert metrics["Lowest normalised entropy"] == "0.050"
    # nothing ran on page load: no pattern chart until a prompt is submitted
    assert "attn_live" not in at.session_state


def _array(value) -> np.ndarray:
    """A figure array from a chart's JSON spec (plotly >= 6 sends typed base64 arrays)."""
    if not isinstance(value, dict):
        return np.asarray(value)
    shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
    return np.frombuffer(base64.b64decode(value["bdata"]), value["dtype"]).reshape(shape)


def test_attention_page_shows_the_sinks_of_the_chosen_run(store_root, monkeypatch):
    at = open_page(store_root, "views/attention.py", monkeypatch)
    assert_clean(at)
    assert at.selectbox(key="attn_run").value == PROBE_RUN
    figs = [json.loads(c.proto.spec) for c in plotly_charts(at)]
    heat = next(f for f in figs if f["layout"]["title"]["text"].startswith("Attention sinks"))
    scores = sinks_table().query("stat == 'sink_score'").pivot(index="layer", columns="head",
                                                                 values="value")
    np.testing.assert_allclose(_array(heat["data"][0]["z"]), scores.to_numpy())  # layer 0 first
    assert list(heat["data"][1]["text"]) == ["L1H0", "L1H1"]  # sink heads: score > 0.3
    rate = next(f for f in figs if f["layout"]["title"]["text"].startswith("Sink rate"))
    assert list(_array(rate["data"][0]["x"])) == [0, 1]
    assert list(_array(rate["data"][0]["y"])) == [0.0, 0.5]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Sink rate (all heads)"] == "0.25"
    assert metrics["Strongest sink head"] == "L1H0"


def test_massive_page_shows_summary_table_and_emergence(store_root, monkeypatch):
    at = open_page(store_root, "views/massive.py", monkeypatch)
    assert_clean(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in plotly_charts(at)]
    assert at.selectbox(key="massive_run").value == PROBE_RUN  # newest run with the summary
    assert titles == ["Residual-stream magnitudes per layer",
                      "Massive activations: layer x residual dimension"]
    top = at.dataframe[0].value
    assert list(top["dim"].unique()) == [99]
    # training dynamics are the organism's: not shown beside a MiniLM run (no model mixing)
    assert "Training checkpoints exist only for the organism" in markdown_text(at)
    at.selectbox(key="massive_run").select(DYNAMICS_RUN).run()
    assert_clean(at)
    assert chart_titles(at) == ["Emergence of massive activations over training"]
    assert at.selectbox(key="emergence_source").value == f"run {DYNAMICS_RUN}"
    n_tables = len(at.dataframe)  # top table + all values; no fit on page load
    at.button(key="emergence_fit_button").click().run()
    assert_clean(at)
    emergence = plotly_charts(at)[-1].proto.spec
    assert json.loads(emergence)["data"][1]["mode"] == "lines"  # the fitted curve is drawn
    assert len(at.dataframe) == n_tables + 1
    params = at.dataframe[-1].value  # the fit of an exact emergence curve is near perfect
    assert list(params["layer"]) == [0, 1] and (params["r2"] > 0.99).all()


def test_massive_page_with_no_massive_values(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    with store.start_run(command="probe", model="minilm") as run:
        run.write_table("massive", massive_table().iloc[:0])
        run.write_table("massive_summary", massive_summary_table())
    at = open_page(store.root, "views/massive.py", monkeypatch)
    assert_clean(at)
    assert "No residual-stream value passed both thresholds" in at.info[0].value


def test_massive_page_shows_the_thresholds_the_run_used(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    with store.start_run(command="probe", model="minilm",
                         config={"massive_abs": 50.0, "massive_ratio": 300.0}) as run:
        run.write_table("massive", massive_table().iloc[:0])
        run.write_table("massive_summary", massive_summary_table())
    at = open_page(store.root, "views/massive.py", monkeypatch)
    assert_clean(at)
    assert "|value| > 50 and > 300x the median" in at.info[0].value
    assert "Thresholds of this run: |value| > 50 and > 300x" in markdown_text(at)
    assert "--massive-ratio 60" in "\n".join(c.value for c in at.code)


def test_sae_page_feature_views(store_root, monkeypatch):
    at = open_page(store_root, "views/sae_features.py", monkeypatch)
    assert_clean(at)
    pick = at.selectbox(key="sae_feature_pick")
    assert pick.value == max(SAE_FEATURES)  # strongest feature first
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in plotly_charts(at)]
    assert titles == ["Feature 42: activation histogram (non-zero)",
                      "Feature 42: direct logit effects",
                      "Feature 42: direct feature attribution by head", "Heads: n_families"]
    assert at.query_params["feature"] == "42"  # the address names the feature shown
    pick.select(min(SAE_FEATURES)).run()
    assert_clean(at)
    examples = example_rows(at)
    # full contexts, rank order, the marked token coloured by activation / top (2, 1, 0 of 2)
    assert [tok for tok, _ in examples] == ["tok0", "tok1", "tok2"]
    assert [alpha for _, alpha in examples] == [1.0, 0.5, 0.15]  # 0.15: the floor
    assert "Feature 7" in plotly_charts(at)[0].proto.spec
    assert "(p)** promoted" in markdown_text(at)  # the logit plot's key


def example_rows(at: AppTest) -> list[tuple[str, float]]:
    """(coloured token, background alpha) of every example in the page's examples HTML."""
    import re

    blocks = [h.proto.body for h in at.get("html") if "attnlab-examples" in h.proto.body]
    assert len(blocks) == 1
    return [(tok, float(alpha)) for alpha, tok in
            re.findall(r"rgba\(245,133,24,([\d.]+)\)[^>]*>([^<]*)</span>", blocks[0])]


def test_sae_page_opens_the_feature_in_the_address(store_root, monkeypatch):
    monkeypatch.setenv("ATTNLAB_RUNS", str(store_root))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["feature"] = str(min(SAE_FEATURES))
    at.run().switch_page("views/sae_features.py").run()
    assert_clean(at)
    assert at.selectbox(key="sae_feature_pick").value == min(SAE_FEATURES)


def chart_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in plotly_charts(at)]


def test_redundancy_page(store_root, monkeypatch):
    at = open_page(store_root, "views/redundancy.py", monkeypatch)
    assert_clean(at)
    assert chart_titles(at) == ["Importance 1 - cos(X, Y) (unit)",
                                "Importance per layer and component (unit)",
                                "acc_ioi vs dropped components", "Measured wall-time speedup",
                                "Head importance: ioi, zero"]
    assert "more redundant than MLPs" in at.info[0].value
    at.selectbox(key="drop_metric").select("lm_loss").run()
    assert_clean(at)
    assert "lm_loss vs dropped components" in chart_titles(at)


def test_circuits_page(store_root, monkeypatch):
    at = open_page(store_root, "views/circuits.py", monkeypatch)
    assert_clean(at)
    titles = chart_titles(at)
    assert titles[0].startswith("z patching (denoising)")
    assert titles[1].startswith("attribution vs exact (z, denoising): r = ")
    assert titles[2].startswith("accuracy drop when a head set is ablated")
    assert at.selectbox(key="circuits_run").value == CIRCUIT_RUN
    roles = at.dataframe[1].value
    assert list(roles["role"]) == ["name_mover"]
    assert list(at.dataframe[2].value["feature"]) == ["/sae_features?feature=42"]  # a link
    assert "report.html (self-contained, offline)" in [
        b.proto.label for b in at.get("download_button")]
    assert any("name mover: L1H3" in m.value for m in at.markdown)


@pytest.mark.parametrize("page", PAGES)
def test_empty_store_says_how_to_produce(tmp_path, monkeypatch, page):
    at = open_page(tmp_path / "empty", page, monkeypatch)
    assert_clean(at)
    text = markdown_text(at)
    assert "attnlab" in "\n".join(c.value for c in at.code), text
    assert "No completed run" in text or "has no runs yet" in text


def test_corrupt_table_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    root = build_fixture_store(tmp_path / "runs", broken=False)
    path = root / PROBE_RUN / "tables" / "entropy.parquet"
    path.write_bytes(path.read_bytes()[:40])  # truncated Parquet
    at = open_page(root, "views/attention.py", monkeypatch)
    assert_clean(at)
    warnings = "\n".join(w.value for w in at.warning)
    assert "corrupt" in warnings and "entropy.parquet" in warnings
    assert any("attnlab probe" in c.value for c in at.code)


def test_missing_table_file_is_a_message(tmp_path, monkeypatch):
    root = build_fixture_store(tmp_path / "runs", broken=False)
    (root / PROBE_RUN / "tables" / "massive.parquet").unlink()
    at = open_page(root, "views/massive.py", monkeypatch)
    assert_clean(at)
    assert "has no table 'massive'" in "\n".join(w.value for w in at.warning)


def test_rewritten_table_and_new_run_show_up_without_restart(tmp_path, monkeypatch):
    root = build_fixture_store(tmp_path / "runs", broken=False)
    at = open_page(root, "views/attention.py", monkeypatch)
    assert {m.label: m.value for m in at.metric}["Heads in entropy collapse"] == "1"
    store = RunStore(root)
    df = store.open_run(PROBE_RUN).read_table("entropy")
    df.loc[df["stat"] == "collapsed", "value"] = 1.0  # every head collapsed now
    store.open_run(PROBE_RUN).write_table("entropy", df)
    at.run()
    assert {m.label: m.value for m in at.metric}["Heads in entropy collapse"] == "8"
    with store.start_run(command="probe", model="minilm", run_id="zz-new-run") as run:
        run.write_table("entropy", df)
    at.run()
    assert any("zz-new-run" in o for o in at.selectbox(key="attn_run").options)


@pytest.mark.parametrize("page", PAGES[1:])
def test_every_heads_heatmap_has_integer_ticks(store_root, monkeypatch, page):
    """Every heatmap over layers / heads: one tick per row and column, each the integer itself
    (or a head's L1H2 name), never plotly's automatic ticks (-0.5, 0.5 ... on numeric axes)."""
    import re

    at = open_page(store_root, page, monkeypatch)
    heatmaps = 0
    for fig in (json.loads(c.proto.spec) for c in plotly_charts(at)):
        trace = fig["data"][0]
        if trace["type"] != "heatmap":
            continue
        for axis, values in (("xaxis", trace["x"]), ("yaxis", trace["y"])):
            spec = fig["layout"][axis]
            title = spec["title"]["text"]
            if title not in ("layer", "head"):
                continue
            heatmaps += 1
            assert spec["type"] == "category" and spec["tickmode"] == "array", (title, spec)
            assert list(spec["ticktext"]) == list(spec["tickvals"]) == list(values)
            assert all(re.fullmatch(r"\d+|L\d+H\d+", str(t)) for t in spec["ticktext"])
            if title == "layer":
                assert fig["layout"]["height"] >= 18 * len(values) or axis == "xaxis"
    assert heatmaps > 0 or page == "views/massive.py"
