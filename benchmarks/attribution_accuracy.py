"""Benchmark: how well attribution patching (AtP, AtP*'s q/k fix, GradDrop) matches exact patching.

Issue 18, item 2. On one task's prompt pairs, for every component in ``--components`` (z, q,
k, v, attn_out, mlp_out; k/v per key/value head under grouped-query attention), all
positions at once and, with ``--per-position``, per position:

- exact effects: ``analyses.causal.patching.patch`` (the fast engine where it applies);
- the estimates of ``analyses.causal.attribution.attribute_many``: plain AtP (``atp``), AtP
  with AtP*'s q/k fix (``atp_qk``: the patched head's softmax recomputed; differs from AtP on
  q and k only), GradDrop (``graddrop``: a non-negative size score) and full AtP*
  (``atp_star``: q/k fix and GradDrop).

It prints a tidy table (granularity, component, estimator, compared, pearson_r, n_nodes):
``compared`` is ``signed`` (estimate vs exact effect: AtP and AtP q/k) or ``size`` (|estimate|
vs |exact|; GradDrop and AtP* are sizes already, and |AtP| is beside them for comparison); the
component ``all`` pools every node of the granularity. Then the verifications needed: nodes
checked in descending score order until the true top 5 / 10 / 20 by |exact| are all found;
the node with the largest |exact| effect of each component with its estimates; and the wall
time of each estimator (best of ``--repeats``) relative to one forward+backward pass of the
same prompts. The estimates come from the library; this script only orchestrates and prints.

    python benchmarks/attribution_accuracy.py --model organism --task ioi --n 32
    python benchmarks/attribution_accuracy.py --model organism --task ioi --n 32 --per-position
    python benchmarks/attribution_accuracy.py --model smollm2 --n 4 --components z,q,k
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as ``python benchmarks/X.py``, Python puts benchmarks/ first on sys.path, where this
# folder's probes.py would shadow the ``probes`` package: put the repository root there.
if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

COMPONENTS = ("z", "q", "k", "v", "attn_out", "mlp_out")
QK = ("q", "k")
#: estimator -> (qk_fix, grad_drop) of ``attribute_many``
ESTIMATORS = {"atp": (False, False), "atp_qk": (True, False), "graddrop": (False, True),
              "atp_star": (True, True)}
#: the estimators compared signed, and those compared as sizes (|estimate| vs |exact|)
SIGNED = ("atp", "atp_qk")
SIZE = ("atp", "atp_qk", "graddrop", "atp_star")
COMPARISONS = [(e, "signed") for e in SIGNED] + [(e, "size") for e in SIZE]
#: estimators that equal another one outside q/k (their rows are printed for q, k, all only)
QK_ONLY = ("atp_qk", "atp_star")
TOP_K = (5, 10, 20)
KEYS = ["component", "layer", "head", "position"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="organism")
    p.add_argument("--task", default="ioi")
    p.add_argument("--n", type=int, default=32, help="prompt pairs")
    p.add_argument("--method", default="denoising", choices=("denoising", "noising"))
    p.add_argument("--components", default=",".join(COMPONENTS),
                   help=f"comma list among {', '.join(COMPONENTS)}")
    p.add_argument("--per-position", action="store_true",
                   help="also sweep every component per position")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed calls of each sweep, the first included (best kept)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    comps = tuple(c.strip() for c in args.components.split(",") if c.strip())
    unknown = sorted(set(comps) - set(COMPONENTS))
    if unknown or not comps:
        p.error(f"--components: {unknown or 'none given'}; choose from {', '.join(COMPONENTS)}")
    args.components = comps
    return args


class Accuracy(NamedTuple):
    """What :func:`main` measured: the tables it printed and the merged effects behind them."""

    correlations: pd.DataFrame  # granularity, component, estimator, compared, pearson_r, n_nodes
    verifications: pd.DataFrame  # granularity, score, top_k, verifications, n_nodes
    times: pd.DataFrame  # granularity, estimator, seconds, x_fwd_bwd
    effects: pd.DataFrame  # granularity + KEYS, exact and one column per estimator
    clean_metric: float  # the metric (mean over prompts) of the clean run
    corrupted_metric: float  # ... and of the corrupted run


def best_of(fn, repeats: int):
    """(first result, best wall time over ``repeats`` calls)."""
    out, best = None, float("inf")
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        res = fn()
        best = min(best, time.perf_counter() - t0)
        out = res if i == 0 else out
    return out, best


class Sweep(NamedTuple):
    """One granularity's effects (KEYS, exact, one column per estimator) and wall times."""

    effects: pd.DataFrame
    seconds: dict[str, float]  # exact and each estimator
    baselines: tuple[float, float]  # the clean and corrupted runs' metrics


def sweep(model, pair, configs, repeats: int) -> Sweep:
    """Exact patching and every estimator of ``configs`` (one granularity), timed."""
    from analyses.causal.attribution import attribute_many
    from analyses.causal.patching import patch

    exact, secs = best_of(lambda: [patch(model, pair, c) for c in configs], repeats)
    effects = pd.concat([r.table for r in exact])[KEYS + ["effect"]]
    effects = effects.rename(columns={"effect": "exact"})
    times = {"exact": secs}
    for name, (qk_fix, grad_drop) in ESTIMATORS.items():
        res, times[name] = best_of(
            lambda q=qk_fix, g=grad_drop: attribute_many(model, pair, configs, q, g), repeats)
        est = pd.concat([r.table for r in res])[KEYS + ["effect"]]
        effects = effects.merge(est.rename(columns={"effect": name}), on=KEYS, validate="1:1")
    return Sweep(effects, times, (exact[0].clean_metric, exact[0].corrupted_metric))


def pearson(a, b) -> float:
    """Pearson r of two equal-length sequences."""
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def correlations(effects: pd.DataFrame) -> pd.DataFrame:
    """Pearson r of each estimator with exact patching, per component and pooled (``all``)."""
    rows = []
    for gran, by_gran in effects.groupby("granularity", sort=False):
        groups = [(c, g) for c, g in by_gran.groupby("component", sort=False)]
        for comp, g in [*groups, ("all", by_gran)]:
            for est, compared in COMPARISONS:
                if est in QK_ONLY and comp not in (*QK, "all"):
                    continue
                x, y = g["exact"], g[est]
                if compared == "size":
                    x, y = x.abs(), y.abs()
                rows.append((gran, comp, est, compared, pearson(x, y), len(g)))
    return pd.DataFrame(rows, columns=["granularity", "component", "estimator", "compared",
                                       "pearson_r", "n_nodes"])


def verifications_needed(score, exact, k: int) -> int:
    """Nodes checked in descending ``score`` order until the k largest |exact| are all found."""
    order = np.argsort(-np.asarray(score, float), kind="stable")
    rank = np.empty(len(order), int)
    rank[order] = np.arange(1, len(order) + 1)
    top = np.argsort(-np.abs(np.asarray(exact, float)), kind="stable")[:k]
    return int(rank[top].max())


def verifications(effects: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for gran, g in effects.groupby("granularity", sort=False):
        for est in SIZE:
            for k in (k for k in TOP_K if k <= len(g)):
                rows.append((gran, est, k, verifications_needed(g[est].abs(), g["exact"], k),
                             len(g)))
    return pd.DataFrame(rows, columns=["granularity", "score", "top_k", "verifications",
                                       "n_nodes"])


def largest(effects: pd.DataFrame) -> pd.DataFrame:
    """The node of largest |exact| effect per granularity and component, with its estimates."""
    idx = effects["exact"].abs().groupby([effects["granularity"], effects["component"]],
                                         sort=False).idxmax()
    return effects.loc[idx.values].reset_index(drop=True)


def forward_backward_seconds(model, pair, method: str, repeats: int) -> float:
    """Best wall time of one forward+backward pass of the patched-side prompts."""
    from analyses.causal.attribution import _GRAD_ENTRY, _forward_backward
    from analyses.causal.patching import make_runner

    runner = make_runner(model, pair)
    tokens = pair.corrupted if method == "denoising" else pair.clean
    run = lambda: _forward_backward(runner, tokens, pair.score, [_GRAD_ENTRY])
    run()  # warm-up
    return best_of(run, max(3, repeats))[1]


def measure(model, pair, components, per_position: bool, method: str,
            repeats: int) -> Accuracy:
    """Every granularity's sweeps, their comparison tables and times (nothing printed)."""
    from analyses.causal.patching import PatchingConfig

    fwd_bwd = forward_backward_seconds(model, pair, method, repeats)
    grans = [("all positions", False)] + ([("per position", True)] if per_position else [])
    parts, time_rows = [], []
    for gran, per_pos in grans:
        configs = [PatchingConfig(c, per_position=per_pos, method=method) for c in components]
        effects, secs, baselines = sweep(model, pair, configs, repeats)
        parts.append(effects.assign(granularity=gran))
        time_rows += [(gran, est, s, s / fwd_bwd) for est, s in secs.items()]
    time_rows.append(("-", "forward+backward", fwd_bwd, 1.0))
    effects = pd.concat(parts, ignore_index=True)
    effects = effects[["granularity", *[c for c in effects.columns if c != "granularity"]]]
    times = pd.DataFrame(time_rows, columns=["granularity", "estimator", "seconds",
                                             "x_fwd_bwd"])
    return Accuracy(correlations(effects), verifications(effects), times, effects, *baselines)


def main(argv=None, model=None, pair=None) -> Accuracy:
    """Run the benchmark and print its tables; ``model``/``pair`` replace the loaded model
    and task (tests pass tiny ones)."""
    import logging
    import warnings

    from analyses.causal.patching import pair_from_task
    from analyses.causal.task_sets import load_model_task
    from probes.models import load_model, unwrap

    for name in ("transformer_lens", "analyses.causal.patching", "analyses.causal.attribution"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    label = args.model if model is None else "given"
    model = unwrap(load_model(args.model, device="cpu") if model is None else model)
    if pair is None:
        pair = pair_from_task(load_model_task(args.model, args.task, n=args.n, seed=0))
    cfg = model.cfg
    kv = getattr(cfg, "n_key_value_heads", None)
    print(f"model {label}: {cfg.n_layers} layers x {cfg.n_heads} heads"
          + (f" ({kv} key/value heads)" if kv and kv != cfg.n_heads else "")
          + f", d_model {cfg.d_model}; task {pair.task}; {pair.batch} pairs x {pair.n_pos} "
          f"tokens; {args.method}; components {', '.join(args.components)}; "
          f"threads {args.threads}")
    acc = measure(model, pair, args.components, args.per_position, args.method, args.repeats)
    print(f"metric {pair.metric_name}: clean {acc.clean_metric:.4f}, corrupted "
          f"{acc.corrupted_metric:.4f} (effects below are in these units)")
    with pd.option_context("display.width", 200, "display.max_rows", 500,
                           "display.float_format", "{:.3f}".format):
        print("\nPearson r with exact patching (signed: estimate vs effect; size: |estimate| "
              "vs |effect|)")
        print(acc.correlations.to_string(index=False))
        print("\nverifications in score order until the true top k by |exact| are all found")
        print(acc.verifications.to_string(index=False))
        print("\nlargest |exact| effect per component, with its estimates")
        print(largest(acc.effects).to_string(index=False, float_format="{:.4f}".format))
        print("\nwall time (best of "
              f"{max(1, args.repeats)}; forward+backward best of {max(3, args.repeats)})")
        print(acc.times.to_string(index=False))
    return acc


if __name__ == "__main__":
    main()
