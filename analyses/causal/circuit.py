"""The analyses behind a circuit report, run once and returned as tables.

For one task of a decoder (the organism): clean/corrupted accuracy and logit difference;
exact patching (head outputs, denoising and noising; residual stream, attention and MLP
outputs by layer x position); attribution patching of the head outputs and its correlation
with exact; the top heads; path patching (for IOI the name-mover / S-inhibition / induction
roles of :mod:`analyses.causal.ioi`, otherwise each head's direct path to the logits); the
selective-impairment ablation table; and, where an SAE is shipped for a top head's layer, the
SAE features that head drives most (direct feature attribution, :mod:`saes.attribution`).

:mod:`analyses.reports.circuit` renders the result; nothing here writes files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm

from analyses.causal.attribution import attribute, correlation
from analyses.causal.impairment import ImpairmentConfig, ImpairmentResult, selective_impairment
from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from analyses.causal.path_patching import PathPatchingConfig, path_patch
from probes.hooks import record

log = logging.getLogger(__name__)
STEPS = 7


@dataclass(frozen=True)
class CircuitConfig:
    task: str = "ioi"  # a data.tasks task name
    n: int = 64  # prompt pairs
    seed: int = 0  # item sampling (references use seed + 1)
    top_k: int = 3  # heads per role / ablated set
    n_random: int = 5  # random head sets in the ablation baseline
    ablation: str = "mean"  # zero | mean | resample

    def __post_init__(self) -> None:
        if self.n < 2 or self.top_k < 1:
            raise ValueError(f"n must be >= 2 and top_k >= 1, got {self.n}, {self.top_k}")


class CircuitAnalysis(NamedTuple):
    config: CircuitConfig
    model: str
    accuracy: pd.DataFrame  # run, accuracy, logit_diff
    patching: pd.DataFrame  # schema `patching`: every sweep, path patching included
    attribution_r: float  # Pearson r, attribution vs exact, z denoising
    top_heads: pd.DataFrame  # layer, head, denoising, noising, attribution
    roles: pd.DataFrame  # role, layer, head, effect, normalized_effect, receivers
    impairment: ImpairmentResult
    sae_features: pd.DataFrame | None  # layer, head, feature, mean_dfa, mean_act
    sae_note: str  # what was found about SAEs


def analyse_circuit(loaded, config: CircuitConfig, progress: bool = True) -> CircuitAnalysis:
    """Run every analysis of the report (progress bar over the steps)."""
    from data.tasks import TASKS, accuracy, load_task, logit_diff

    if loaded.kind != "decoder":
        raise ValueError(f"circuit reports need a decoder with task datasets; {loaded.name!r} "
                         "is an encoder: use `attnlab patch --model minilm` instead")
    model = loaded.model
    bar = tqdm(total=STEPS, desc=f"circuit report {config.task}", disable=not progress)
    ds = load_task(config.task, n=config.n, seed=config.seed)
    pair = pair_from_task(ds)
    with torch.no_grad():
        lc, lr = model(ds.clean_tokens), model(ds.corrupted_tokens)
    acc = pd.DataFrame({"run": ["clean", "corrupted"],
                        "accuracy": [accuracy(lc, ds), _corrupted_accuracy(lr, ds)],
                        "logit_diff": [logit_diff(lc, ds).mean().item(),
                                       logit_diff(lr, ds).mean().item()]})
    bar.update()
    sweeps = [patch(model, pair, PatchingConfig("z", method=m)).table
              for m in ("denoising", "noising")]
    bar.update()
    sweeps += [patch(model, pair, PatchingConfig(c, per_position=True)).table
               for c in ("resid_pre", "attn_out", "mlp_out")]
    bar.update()
    attr = attribute(model, pair, PatchingConfig("z")).table
    r = correlation(sweeps[0], attr)
    bar.update()
    roles, paths = _roles(model, ds, pair, config)
    bar.update()
    tasks = {t: load_task(t, n=config.n, seed=config.seed) for t in TASKS}
    refs = {t: load_task(t, n=config.n, seed=config.seed + 1) for t in TASKS}
    sources = tuple(dict.fromkeys((config.task, "recall", "reasoning")))
    imp = selective_impairment(model, tasks, refs, ImpairmentConfig(
        sources, k=config.top_k, n_random=config.n_random, ablation=config.ablation))
    bar.update()
    top = top_head_table(sweeps[0], sweeps[1], attr, config.top_k)
    sae, note = sae_features(loaded, ds, top)
    bar.update()
    bar.close()
    table = pd.concat(sweeps + [attr, paths], ignore_index=True)
    return CircuitAnalysis(config, loaded.name, acc, table, r, top, roles, imp, sae, note)


def _corrupted_accuracy(logits, ds) -> float:
    pred = logits[:, -1].argmax(-1)
    return (pred == ds.corrupted_answer_ids).float().mean().item()


def _roles(model, ds, pair, config):
    """IOI: Wang et al.'s roles; other tasks: each head's direct path to the logits."""
    if config.task == "ioi":
        from analyses.causal.ioi import ioi_circuit

        res = ioi_circuit(model, ds, k=config.top_k, seed=config.seed)
        return res.roles, res.paths
    direct = path_patch(model, pair, PathPatchingConfig(method="denoising", freeze_mlps=True))
    best = direct.sort_values("effect", ascending=False).head(config.top_k)
    roles = pd.DataFrame({"role": "direct_effect", "layer": best.layer, "head": best["head"],
                          "effect": best.effect, "normalized_effect": best.normalized_effect,
                          "receivers": best.receivers})
    return roles.reset_index(drop=True), direct


def top_head_table(den: pd.DataFrame, noi: pd.DataFrame, attr: pd.DataFrame, k: int):
    """The k heads with the largest denoising effect, with their noising/attribution effects."""
    keys = ["layer", "head"]
    t = den[keys + ["normalized_effect"]].rename(columns={"normalized_effect": "denoising"})
    t = t.merge(noi[keys + ["normalized_effect"]].rename(
        columns={"normalized_effect": "noising"}), on=keys)
    t = t.merge(attr[keys + ["normalized_effect"]].rename(
        columns={"normalized_effect": "attribution"}), on=keys)
    return t.sort_values("denoising", ascending=False).head(k).reset_index(drop=True)


def sae_features(loaded, ds, top: pd.DataFrame, n_features: int = 5):
    """Top SAE features (by mean direct feature attribution) of each top head, if shipped."""
    try:
        from saes.io import load_shipped
    except ImportError as exc:
        return None, f"SAE package unavailable ({exc})"
    rows, notes = [], []
    for layer in sorted(set(int(x) for x in top.layer)):
        try:
            sae = load_shipped(loaded.name, layer)
        except FileNotFoundError:
            notes.append(f"no SAE found for layer {layer}")
            continue
        rows += _layer_features(loaded, sae, ds, layer, top[top.layer == layer], n_features)
        notes.append(f"layer {layer}: shipped SAE (d_sae {int(sae.cfg.d_sae)})")
    df = pd.DataFrame(rows, columns=["layer", "head", "feature", "mean_dfa", "mean_act"])
    return (df if rows else None), "; ".join(notes)


def _layer_features(loaded, sae, ds, layer, heads, n_features):
    from saes.attribution import dfa_by_head
    from saes.encode import encode

    name = f"blocks.{layer}.attn.hook_z"
    with torch.no_grad():
        _, acts = record(loaded.model, [name], lambda: loaded.model(ds.clean_tokens))
        z = acts[name][:, -1]  # (batch, head, d_head) at the scored position
        dfa = dfa_by_head(sae, z)  # per_head (batch, head, d_sae)
        feats = encode(sae, z).acts  # (batch, d_sae); accepts (batch, head, d_head)
    rows = []
    for head in heads["head"].astype(int):
        score = dfa.per_head[:, head].mean(0)  # (d_sae,)
        for f in score.topk(n_features).indices.tolist():
            rows.append((layer, head, f, float(score[f]), float(feats[:, f].mean())))
    return rows
