"""Emergence-curve fit: recovers known parameters from synthetic trajectories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from probes.emergence import (
    emergence_curve,
    emergence_jacobian,
    fit_emergence,
    massive_trajectory,
    peak_step,
)

TRUE = {"A": 40.0, "lam": 0.5, "gamma": 0.004, "t0": 1.2, "K": 10.0}
STEPS = np.r_[0, np.unique(np.round(np.geomspace(1, 20_000, 25)).astype(int))]


def _synthetic(noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for layer, scale in enumerate([1.0, 0.5, 2.0]):
        p = dict(TRUE, A=TRUE["A"] * scale)
        y = emergence_curve(STEPS, *p.values())
        y = y + rng.normal(0, noise * np.ptp(y), len(y))
        rows.append(pd.DataFrame({"step": STEPS, "layer": layer, "value": y,
                                  "metric": "massive_ratio"}))
    other = pd.DataFrame({"step": STEPS, "layer": 0, "value": 0.0, "metric": "loss"})
    return pd.concat(rows + [other], ignore_index=True)


def test_jacobian_matches_finite_differences():
    t = STEPS.astype(float)
    p = np.array(list(TRUE.values()))
    eps = 1e-6
    num = np.stack([(emergence_curve(t, *(p + eps * e)) - emergence_curve(t, *(p - eps * e)))
                    / (2 * eps) for e in np.eye(5)], axis=1)
    np.testing.assert_allclose(emergence_jacobian(t, *p), num, rtol=1e-5, atol=1e-4)


def test_peak_is_the_argmax_of_the_curve():
    t = np.linspace(0, 3000, 300_001)
    t_star = peak_step(TRUE["lam"], TRUE["gamma"], TRUE["t0"])
    assert t_star == pytest.approx(t[np.argmax(emergence_curve(t, *TRUE.values()))], abs=0.02)
    assert np.isnan(peak_step(0.0, 1.0, 1.0))


def test_fit_recovers_known_parameters_without_noise():
    fit = fit_emergence(_synthetic(0.0), metric="massive_ratio")
    p = fit.params.set_index("layer")
    assert (p["r2"] > 0.9999).all() and p["converged"].all()
    for layer, scale in enumerate([1.0, 0.5, 2.0]):
        for name, true in dict(TRUE, A=TRUE["A"] * scale).items():
            assert p.loc[layer, name] == pytest.approx(true, rel=1e-3), (layer, name)


def test_fit_on_noisy_data():
    fit = fit_emergence(_synthetic(0.01, seed=1), metric="massive_ratio")
    p = fit.params.set_index("layer")
    assert (p["r2"] > 0.99).all()
    true_peak = peak_step(TRUE["lam"], TRUE["gamma"], TRUE["t0"])
    np.testing.assert_allclose(p["peak_step"], true_peak, rtol=0.05)
    np.testing.assert_allclose(p["K"], TRUE["K"], rtol=0.05)
    assert set(fit.curve.columns) == {"layer", "step", "value"}
    assert len(fit.curve) == 3 * 200


def test_bad_input():
    with pytest.raises(ValueError, match="distinct steps"):
        fit_emergence(pd.DataFrame({"step": [1, 2, 3], "layer": 0, "value": [1.0, 2, 3]}))
    with pytest.raises(ValueError, match="columns"):
        fit_emergence(pd.DataFrame({"step": [1], "value": [1.0]}))


@pytest.mark.slow
def test_massive_trajectory_reads_each_checkpoint(minilm):
    from probes.pipeline import run_probes

    loaded = minilm
    prompts = ["The cat sat on the mat.", "Bees carry pollen from flower to flower."]
    calls = []
    ckpts = {10: loaded, 0: lambda: calls.append(0) or loaded}
    traj = massive_trajectory(ckpts, prompts)
    assert calls == [0] and sorted(traj["step"].unique()) == [0, 10]
    summ = run_probes(loaded, prompts, what="massive")["massive_summary"]
    ratio = summ[summ["stat"] == "ratio"].set_index("layer")["value"]
    got = traj[traj["step"] == 10].set_index("layer")["value"]
    np.testing.assert_allclose(got.sort_index(), ratio.sort_index(), rtol=1e-6)
