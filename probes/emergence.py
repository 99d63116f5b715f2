"""Emergence of massive activations over training ("Hidden Dynamics of Massive Activations").

The quantity (their Eq. 9 setting): r(t) = max|h| / median|h| of a layer's residual output,
averaged over a few sequences, at checkpoint step t (``massive_summary``'s ``ratio``; the
organism's dynamics table has it as metric ``massive_ratio``). The model:

    f(t) = A exp(-lam x) log(x) + K,   x = gamma t + t0,   lam >= 0, gamma > 0, t0 > 0

fitted per layer with scipy ``curve_fit`` (method "trf", bounds, the analytic Jacobian below),
from the paper's initial guesses A = range(y), K = min(y) + A/2, lam = 1/std(x), gamma =
1/range(t), t0 = 1; if that start does not reach R^2 > 0.999, further starts place the
curve's extremum at the data's (several lam) and the best fit wins. Derived:
the peak step t* = (exp(W(1/lam)) - t0) / gamma (W = Lambert W; where df/dx = 0) and the
limit K. scipy has the optimiser; the model, Jacobian, starts and peak are what is added here.

    fit = fit_emergence(dynamics, metric="massive_ratio")
    fit.params   # layer, A, lam, gamma, t0, K, peak_step, r2, n_points, converged
    fit.curve    # layer, step, value (the fitted curve on a dense grid)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit
from scipy.special import lambertw

PARAMS = ("A", "lam", "gamma", "t0", "K")


def emergence_curve(t: np.ndarray, A: float, lam: float, gamma: float, t0: float,
                    K: float) -> np.ndarray:
    """f(t) = A exp(-lam x) log(x) + K with x = gamma t + t0."""
    x = gamma * np.asarray(t, dtype=float) + t0
    return A * np.exp(-lam * x) * np.log(x) + K


def emergence_jacobian(t: np.ndarray, A: float, lam: float, gamma: float, t0: float,
                       K: float) -> np.ndarray:
    """(step, 5) partial derivatives of :func:`emergence_curve` w.r.t. (A, lam, gamma, t0, K)."""
    t = np.asarray(t, dtype=float)
    x = gamma * t + t0
    e, lg = np.exp(-lam * x), np.log(x)
    dfdx = A * e * (1.0 / x - lam * lg)
    return np.stack([e * lg, -A * x * e * lg, dfdx * t, dfdx, np.ones_like(t)], axis=1)


def peak_step(lam: float, gamma: float, t0: float) -> float:
    """argmax_t of the curve (A > 0): x* log x* = 1/lam, x* = exp(W(1/lam)); NaN if lam = 0."""
    if lam <= 0:
        return float("nan")
    x_star = float(np.exp(lambertw(1.0 / lam).real))
    return (x_star - t0) / gamma


class EmergenceFit(NamedTuple):
    """Per-layer fitted parameters and quality, and the fitted curves."""

    params: pd.DataFrame  # layer, A, lam, gamma, t0, K, peak_step, r2, n_points, converged
    curve: pd.DataFrame  # layer, step, value


def _r2(y: np.ndarray, yhat: np.ndarray) -> float:
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - yhat) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _starts(t: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """The paper's initial guess first, then starts whose peak sits at the data's extremum."""
    t_range = float(np.ptp(t)) or 1.0
    a0 = float(np.ptp(y)) or 1.0
    gamma0, t00 = 1.0 / t_range, 1.0
    lam0 = 1.0 / max(float(np.std(gamma0 * t + t00)), 1e-6)
    starts = [[a0, lam0, gamma0, t00, float(y.min()) + a0 / 2]]
    # f peaks (A > 0) or dips (A < 0) at x* = exp(W(1/lam)); place it at the data's extremum
    for sign, idx in ((1.0, int(np.argmax(y))), (-1.0, int(np.argmin(y)))):
        t_ext = max(float(t[idx] - t.min()), t_range / len(t))
        for lam in (lam0, 1.0, 0.3, 0.1, 0.03):
            x_star = float(np.exp(lambertw(1.0 / lam).real))
            gamma = max(x_star - t00, 1e-3) / t_ext
            k0 = float(y[-1])
            amp = (float(y[idx]) - k0) / max(np.exp(-lam * x_star) * np.log(x_star), 1e-12)
            starts.append([amp if np.isfinite(amp) else sign * a0, lam, gamma, t00, k0])
    return starts


def fit_one(t: np.ndarray, y: np.ndarray, max_nfev: int = 5_000) -> tuple[np.ndarray, bool]:
    """Fit the five parameters to one layer's (t, y); returns (params, converged)."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    lower = [-np.inf, 0.0, 1e-12, 1e-9, -np.inf]
    upper = [np.inf, np.inf, np.inf, np.inf, np.inf]
    best, best_sse = None, np.inf
    for p0 in _starts(t, y):
        try:
            p, _ = curve_fit(emergence_curve, t, y, p0=p0, jac=emergence_jacobian,
                             bounds=(lower, upper), method="trf", max_nfev=max_nfev)
        except (RuntimeError, ValueError):
            continue
        sse = float(((emergence_curve(t, *p) - y) ** 2).sum())
        if np.isfinite(sse) and sse < best_sse:
            best, best_sse = p, sse
        if best is not None and _r2(y, emergence_curve(t, *best)) > 0.999:
            break
    if best is None:
        return np.full(5, np.nan), False
    return best, True


def fit_emergence(df: pd.DataFrame, metric: str | None = None,
                  n_curve: int = 200) -> EmergenceFit:
    """Fit the emergence curve per layer of a long table with columns step, layer, value.

    ``metric``: keep only rows with that ``metric`` (e.g. "massive_ratio" in the organism's
    dynamics table). Layers need >= 6 distinct steps (5 parameters).
    """
    if metric is not None:
        if "metric" not in df.columns:
            raise ValueError("metric= given but the table has no 'metric' column")
        df = df[df["metric"] == metric]
    missing = [c for c in ("step", "layer", "value") if c not in df.columns]
    if missing:
        raise ValueError(f"fit_emergence needs columns step, layer, value; missing {missing}")
    if df.empty:
        raise ValueError(f"no rows to fit (metric={metric!r})")
    rows, curves = [], []
    for layer, part in df.groupby("layer", sort=True):
        g = part.groupby("step")["value"].mean().sort_index()  # one value per step
        t, y = g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)
        if len(t) < 6:
            raise ValueError(f"layer {layer}: {len(t)} distinct steps, need >= 6 to fit 5 "
                             "parameters")
        p, ok = fit_one(t, y)
        r2 = _r2(y, emergence_curve(t, *p)) if ok else float("nan")
        rows.append({"layer": layer, **dict(zip(PARAMS, p)), "peak_step": peak_step(*p[1:4]),
                     "r2": r2, "n_points": len(t), "converged": ok})
        grid = np.linspace(t.min(), t.max(), n_curve)
        curves.append(pd.DataFrame({"layer": layer, "step": grid,
                                    "value": emergence_curve(grid, *p)}))
    return EmergenceFit(pd.DataFrame(rows), pd.concat(curves, ignore_index=True))


def massive_trajectory(checkpoints: Mapping[int, object], prompts: Sequence[str],
                       batch_size: int = 16) -> pd.DataFrame:
    """r(t) per layer over checkpoints: {step: LoadedModel (or a callable returning one)}.

    Each checkpoint is loaded (if callable), probed with :func:`probes.pipeline.run_probes`
    (massive only) and released before the next. Columns: step, layer, value.
    """
    from probes.pipeline import run_probes

    out = []
    for step in sorted(checkpoints):
        item = checkpoints[step]
        loaded = item() if callable(item) else item
        summ = run_probes(loaded, prompts, what="massive", batch_size=batch_size)[
            "massive_summary"]
        ratio = summ[summ["stat"] == "ratio"]
        out.append(pd.DataFrame({"step": step, "layer": ratio["layer"].to_numpy(),
                                 "value": ratio["value"].to_numpy()}))
    return pd.concat(out, ignore_index=True)
