"""benchmarks/attribution_accuracy.py: its tables hold what the library computes, per node."""

from __future__ import annotations

import numpy as np
import pytest

from analyses.causal.attribution import attribute, correlation
from analyses.causal.patching import PatchingConfig, patch
from benchmarks import attribution_accuracy as bench
from tests.support.tiny import make_pair, tiny_decoder


@pytest.fixture(scope="module")
def run():
    model, pair = tiny_decoder().model, make_pair(batch=3, n_pos=5)
    acc = bench.main(["--per-position", "--repeats", "1"], model=model, pair=pair)
    return model, pair, acc


def _row(acc, gran, comp, est, compared):
    t = acc.correlations
    hit = t[(t.granularity == gran) & (t.component == comp) & (t.estimator == est)
            & (t.compared == compared)]
    assert len(hit) == 1, (gran, comp, est, compared)
    return hit.iloc[0]


def test_every_component_has_rows_with_its_node_count(run):
    model, pair, acc = run
    cfg, t = model.cfg, acc.correlations
    nodes = {c: cfg.n_layers * cfg.n_heads for c in ("z", "q", "k", "v")}
    nodes |= {"attn_out": cfg.n_layers, "mlp_out": cfg.n_layers}
    for gran, per_node in (("all positions", 1), ("per position", pair.n_pos)):
        for comp, n in nodes.items():
            ests = set(t[(t.granularity == gran) & (t.component == comp)].estimator)
            # the q/k fix changes q and k only: its rows are printed for them (and pooled)
            assert ests == ({"atp", "atp_qk", "graddrop", "atp_star"} if comp in ("q", "k")
                            else {"atp", "graddrop"}), (gran, comp)
            assert _row(acc, gran, comp, "atp", "signed").n_nodes == n * per_node
        assert _row(acc, gran, "all", "graddrop", "size").n_nodes == \
            sum(nodes.values()) * per_node


def test_correlations_equal_independent_computations(run):
    model, pair, acc = run
    for comp in ("z", "k"):
        for per_pos, gran in ((False, "all positions"), (True, "per position")):
            cfg = PatchingConfig(comp, per_position=per_pos)
            exact_run = patch(model, pair, cfg)
            assert (acc.clean_metric, acc.corrupted_metric) == pytest.approx(
                (exact_run.clean_metric, exact_run.corrupted_metric))
            exact = exact_run.table
            plain = attribute(model, pair, cfg).table
            assert _row(acc, gran, comp, "atp", "signed").pearson_r == pytest.approx(
                correlation(exact, plain), abs=1e-9)
            fixed = attribute(model, pair, cfg, qk_fix=True).table
            if comp == "k":  # the fix changes the k estimates, so a mix-up would show
                assert correlation(exact, fixed) != pytest.approx(correlation(exact, plain))
                assert _row(acc, gran, comp, "atp_qk", "signed").pearson_r == pytest.approx(
                    correlation(exact, fixed), abs=1e-9)
            drop = attribute(model, pair, cfg, grad_drop=True).table
            merged = exact.merge(drop, on=bench.KEYS)
            assert (merged.effect_y >= -1e-6).all()  # GradDrop is a size score
            want = np.corrcoef(merged.effect_x.abs(), merged.effect_y.abs())[0, 1]
            assert _row(acc, gran, comp, "graddrop", "size").pearson_r == pytest.approx(
                want, abs=1e-9)


def test_verifications_count_nodes_until_the_true_top_k_are_found(run):
    _, _, acc = run
    e = acc.effects[acc.effects.granularity == "all positions"]
    for est in bench.SIZE:
        scores = e[est].abs().to_numpy()
        exact = e["exact"].abs().to_numpy()
        for k in bench.TOP_K:
            top = set(np.argsort(-exact, kind="stable")[:k])
            seen, checked = set(), 0
            for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
                if top <= seen:
                    break
                seen.add(i)
                checked += 1
            v = acc.verifications
            got = v[(v.granularity == "all positions") & (v.score == est) & (v.top_k == k)]
            assert got.verifications.tolist() == [checked], (est, k)
            assert k <= checked <= len(scores)


def test_times_are_relative_to_one_forward_backward(run):
    _, _, acc = run
    t = acc.times
    fb = t[t.estimator == "forward+backward"].seconds.item()
    assert set(t.estimator) == {"exact", *bench.ESTIMATORS, "forward+backward"}
    assert np.allclose(t.x_fwd_bwd, t.seconds / fb)


def test_unknown_components_are_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--components", "z,pattern"])
    assert "choose from z, q, k, v, attn_out, mlp_out" in capsys.readouterr().err
    assert bench.parse_args(["--components", "z, k"]).components == ("z", "k")
