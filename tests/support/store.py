"""A deterministic fixture run store for the dashboard tests, built through ``data.store``.

Every table goes through ``Run.write_table``, so it is validated against ``data.schemas``
(a schema change that the fixture does not follow fails here, loudly). Values are small but
shaped like the real ones: a massive dim, one collapsed head, entropy above its bound.

    root = build_fixture_store(tmp_path / "runs")
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from data.store import RunStore

N_LAYERS, N_HEADS = 2, 4
PROBE_RUN = "20260101-000000-probe-minilm"
REDUNDANCY_RUN = "20260101-000100-redundancy-organism"
CIRCUIT_RUN = "20260101-000200-report-circuit-organism"
FAILED_RUN = "20260101-000300-failed"
CORRUPT_RUN = "20260101-000400-corrupt-manifest"
SAE_RUN = "20260101-000500-sae-organism"
DYNAMICS_RUN = "20260101-000600-organism-train"
SAE_FEATURES = (7, 42)  # features in the SAE fixture tables; 42 has the larger activation


def entropy_table(model: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            collapsed = layer == 1 and head == 2
            norm = 0.05 if collapsed else float(rng.uniform(0.4, 0.9))
            mean = norm * np.log(8.0)
            bound = 0.5 * mean * float(rng.uniform(0.1, 0.9))
            stats = {"mean": mean, "std": 0.1, "min": mean / 2, "max": mean * 1.2,
                     "q05": mean * 0.6, "q50": mean, "q95": mean * 1.1, "norm_mean": norm,
                     "bound_mean": bound, "logit_norm_mean": 3.0 - norm,
                     "weight_bound_mean": bound / 2, "bound_violations": 0.0,
                     "n_queries": 100.0, "collapsed": float(collapsed)}
            rows += [{"model": model, "layer": layer, "head": head,
                      "stat": s, "value": float(v)} for s, v in stats.items()]
    return pd.DataFrame(rows)


def massive_table() -> pd.DataFrame:
    rows = [{"layer": layer, "prompt": 0, "position": pos, "token": tok, "dim": 99,
             "value": 180.0 + 10 * layer + pos, "ratio": 2000.0 + 50 * layer}
            for layer in range(N_LAYERS) for pos, tok in [(0, "[CLS]"), (5, "[SEP]")]]
    return pd.DataFrame(rows)


def massive_summary_table() -> pd.DataFrame:
    rows = []
    for layer in range(N_LAYERS):
        stats = {"top1": 190.0 + layer, "top2": 40.0, "median": 0.3, "ratio": 600.0 + layer,
                 "top1_max": 200.0 + layer, "n_sequences": 8.0}
        rows += [{"layer": layer, "stat": s, "value": v} for s, v in stats.items()]
    return pd.DataFrame(rows)


def head_norms_table() -> pd.DataFrame:
    rows = []
    for layer in range(N_LAYERS):
        for head in [-1, *range(N_HEADS)]:
            for stat, scale in [("mean", 1.0), ("std", 0.2), ("max", 3.0)]:
                rows.append({"layer": layer, "head": head, "stat": stat,
                             "value": scale * (1 + layer + 0.1 * head)})
    return pd.DataFrame(rows)


#: Sink scores of the fixture: L1H0 and L1H1 are sink heads at epsilon 0.3, nothing else is.
SINK_SCORES = {(1, 0): 0.9, (1, 1): 0.6}
SINK_EPSILON = 0.3


def sinks_table() -> pd.DataFrame:
    rows = []
    for layer in range(N_LAYERS):
        for head in range(N_HEADS):
            stats = {"sink_score": SINK_SCORES.get((layer, head), 0.05 * (head + 1)),
                     "delimiter_score": 0.1 + 0.02 * head, "n_queries": 120.0,
                     "n_delimiter_queries": 80.0}
            rows += [{"layer": layer, "head": head, "stat": s, "value": v}
                     for s, v in stats.items()]
    return pd.DataFrame(rows)


def sink_rate_table() -> pd.DataFrame:
    """The sink rate of :func:`sinks_table`: none in layer 0, 2 of 4 in layer 1, 2 of 8 in all."""
    return pd.DataFrame({"layer": [0, 1, -1], "value": [0.0, 0.5, 0.25],
                         "n_heads": [N_HEADS, N_HEADS, N_LAYERS * N_HEADS],
                         "epsilon": SINK_EPSILON})


def redundancy_table() -> pd.DataFrame:
    rows = []
    for layer in range(N_LAYERS):
        rows += [{"layer": layer, "component": "attn", "score": 0.02 + 0.01 * layer},
                 {"layer": layer, "component": "mlp", "score": 0.2 + 0.05 * layer},
                 {"layer": layer, "component": "block", "score": 0.25 + 0.05 * layer}]
    return pd.DataFrame(rows)


def patching_table() -> pd.DataFrame:
    rows = []
    for method in ["denoising", "attribution_denoising"]:
        for layer in range(N_LAYERS):
            for head in range(N_HEADS):
                eff = 0.8 if (layer, head) == (1, 3) else 0.05 * head
                if method.startswith("attribution"):
                    eff *= 0.9
                rows.append({"task": "ioi", "component": "z", "layer": layer, "head": head,
                             "position": -1, "effect": 2.0 * eff, "normalized_effect": eff,
                             "method": method})
    return pd.DataFrame(rows)


def sae_tables(layer: int = 1) -> dict[str, pd.DataFrame]:
    """The seven SAE tables of ``saes.features`` / ``saes.evaluate`` for two features."""
    ex, hist, heads, logit = [], [], [], []
    for f, top in zip(SAE_FEATURES, (2.0, 5.0)):
        ex += [{"feature": f, "rank": r, "activation": top - r, "token": f"tok{r}",
                "context": f"a b [[tok{r}]] c", "prompt_idx": r, "pos": 2} for r in range(3)]
        hist += [{"feature": f, "bin_left": b * top / 4, "bin_right": (b + 1) * top / 4,
                  "count": 10 - 2 * b} for b in range(4)]
        shares = np.array([0.7, 0.1, 0.1, 0.1]) if f == 42 else np.full(N_HEADS, 0.25)
        heads += [{"feature": f, "layer": layer, "head": h, "value": 3 * s, "share": s,
                   "weight_share": s, "n_active": 30} for h, s in enumerate(shares)]
        logit += [{"feature": f, "direction": d, "rank": r, "token": f"{d[:3]}{r}",
                   "value": (1 if d == "promoted" else -1) * (3.0 - r)}
                  for d in ("promoted", "suppressed") for r in range(3)]
    summary = [{"layer": layer, "head": h, "stat": s, "value": float(v)}
               for h in range(N_HEADS) for s, v in
               [("n_features", 2 - (h > 0)), ("n_families", 1), ("effective_features", 1.5)]]
    driven = [{"layer": layer, "head": 0, "rank": 0, "feature": 42, "share": 0.7,
               "family": "0"}]
    evals = [{"model": "organism", "layer": layer, "sae": "shipped", "metric": m, "value": v}
             for m, v in [("l0", 16.0), ("explained_variance", 0.9), ("ce_recovered", 0.88)]]
    return {"sae_feature_examples": pd.DataFrame(ex), "sae_feature_hist": pd.DataFrame(hist),
            "sae_feature_heads": pd.DataFrame(heads), "sae_logit_effects": pd.DataFrame(logit),
            "sae_head_summary": pd.DataFrame(summary),
            "sae_head_features": pd.DataFrame(driven), "sae_eval": pd.DataFrame(evals)}


def dynamics_table() -> pd.DataFrame:
    """Organism-style dynamics: massive_ratio per layer on an exact emergence curve + loss."""
    steps = np.unique(np.geomspace(1, 4000, 12).round()).astype(int)
    rows = [{"step": int(t), "metric": "loss", "layer": -1, "head": -1, "value": 5 / np.log(t + 2)}
            for t in steps]
    for layer, (a, k) in enumerate([(400.0, 30.0), (150.0, 10.0)]):
        x = 0.01 * steps + 1.0
        y = a * np.exp(-0.3 * x) * np.log(x) + k
        rows += [{"step": int(t), "metric": "massive_ratio", "layer": layer, "head": -1,
                  "value": float(v)} for t, v in zip(steps, y)]
    return pd.DataFrame(rows)


def redundancy_tables() -> dict[str, pd.DataFrame]:
    """Scores plus the drop curve, speedup and head importance of ``attnlab redundancy``."""
    curve, speed = [], []
    for mode, seed in [("one_shot", -1), ("random", 0), ("random", 1)]:
        for n in range(3):
            for metric, base in [("lm_loss", 2.0), ("acc_ioi", 0.95)]:
                step = (0.1 if mode == "one_shot" else 0.3) * n
                curve.append({"strategy": "joint", "mode": mode, "seed": seed, "n_dropped": n,
                              "dropped": ",".join(f"attn{i}" for i in range(n)),
                              "metric": metric,
                              "value": base + step if metric == "lm_loss" else base - step})
        if mode == "one_shot":
            speed += [{"strategy": "joint", "mode": mode, "n_dropped": n, "full_ms": 10.0,
                       "pruned_ms": 10.0 - 2 * n, "speedup": 10.0 / (10.0 - 2 * n),
                       "repeats": 5} for n in range(3)]
    heads = [{"task": "ioi", "metric": "logit_diff", "layer": la, "head": h, "method": m,
              "value": 0.5 if (la, h) == (1, 3) else 0.01 * h}
             for la in range(N_LAYERS) for h in range(N_HEADS) for m in ("zero", "taylor_zero")]
    corr = pd.DataFrame([{"task": "ioi", "pair": "zero~taylor_zero", "spearman": 0.8}])
    return {"redundancy": redundancy_table(), "drop_curve": pd.DataFrame(curve),
            "speedup": pd.DataFrame(speed), "head_importance": pd.DataFrame(heads),
            "head_importance_corr": corr}


def circuit_tables() -> dict[str, pd.DataFrame]:
    """The tables of ``attnlab report circuit``: patching, impairment, roles, SAE features."""
    impairment = [{"task": t, "ablated_set": s, "k": 2, "accuracy": 0.9,
                   "accuracy_ablated": 0.9 - d, "drop": d, "drop_std": std, "heads": hs}
                  for t in ("recall", "reasoning")
                  for s, d, std, hs in [("top_recall", 0.5 if t == "recall" else 0.05, 0.0,
                                         "1.3 0.1"),
                                        ("random_2", 0.02, 0.01, "random")]]
    roles = [{"role": "name_mover", "layer": 1, "head": 3, "effect": 1.6,
              "normalized_effect": 0.8, "receivers": "logits"}]
    feats = [{"layer": 1, "head": 3, "feature": 42, "mean_dfa": 0.7, "mean_act": 3.0}]
    return {"patching": patching_table(), "impairment": pd.DataFrame(impairment),
            "circuit_roles": pd.DataFrame(roles), "circuit_sae_features": pd.DataFrame(feats)}


def _write_run(store: RunStore, run_id: str, command: str, model: str,
               tables: dict[str, pd.DataFrame]) -> None:
    with store.start_run(command=command, model=model, run_id=run_id) as run:
        for name, df in tables.items():
            run.write_table(name, df)


def build_fixture_store(root: str | Path, broken: bool = True) -> Path:
    """Write the fixture runs under ``root``; ``broken`` adds a failed and a corrupt run."""
    store = RunStore(root)
    _write_run(store, PROBE_RUN, "probe", "minilm", {
        "entropy": entropy_table("minilm"), "massive": massive_table(),
        "massive_summary": massive_summary_table(), "head_norms": head_norms_table(),
        "sinks": sinks_table(), "sink_rate": sink_rate_table(),
    })
    _write_run(store, REDUNDANCY_RUN, "redundancy", "organism", redundancy_tables())
    store.open_run(REDUNDANCY_RUN).update_manifest(
        he_comparison={"verdict": "attention layers are more redundant than MLPs"})
    _write_run(store, CIRCUIT_RUN, "report circuit", "organism", circuit_tables())
    folder = store.open_run(CIRCUIT_RUN).path
    (folder / "report.html").write_text("<html><body><h1>IOI circuit</h1></body></html>",
                                        encoding="utf-8")
    (folder / "report.md").write_text("# IOI circuit\n\nname mover: L1H3\n", encoding="utf-8")
    _write_run(store, SAE_RUN, "sae features", "organism", sae_tables())
    _write_run(store, DYNAMICS_RUN, "organism train", "organism",
               {"organism_dynamics": dynamics_table()})
    if broken:
        try:
            with store.start_run(command="probe", model="minilm", run_id=FAILED_RUN):
                raise RuntimeError("killed for the fixture")
        except RuntimeError:
            pass
        bad = store.root / CORRUPT_RUN
        bad.mkdir(parents=True)
        (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    return store.root


def add_random_sae(root: str | Path, run_id: str, model: str, layer: int, d_in: int,
                   d_sae: int = 64, k: int = 4) -> Path:
    """Save a random TopK hook_z SAE (SAE-Lens format) inside run ``run_id``'s folder."""
    import sae_lens
    import torch
    from sae_lens.saes.sae import SAEMetadata

    from saes.io import save_sae

    cfg = sae_lens.TopKSAEConfig(
        d_in=d_in, d_sae=d_sae, k=k, reshape_activations="hook_z",
        metadata=SAEMetadata(hook_name=f"blocks.{layer}.attn.hook_z", model_name=model))
    gen = torch.Generator().manual_seed(0)
    sae = sae_lens.TopKSAE(cfg)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return save_sae(sae, Path(root) / run_id / "sae" / f"layer{layer}")
