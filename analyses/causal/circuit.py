"""The analyses behind a circuit report, run once and returned as tables.

For one task of a decoder (the organism, SmolLM2): clean/corrupted accuracy and logit
difference; exact patching (head outputs, denoising and noising; residual stream, attention and
MLP outputs by layer x position); attribution patching of the head outputs and its correlation
with exact; the top heads; path patching (for IOI the name-mover / S-inhibition / induction
roles of :mod:`analyses.causal.ioi`, otherwise each head's direct path to the logits); the
selective-impairment ablation table; and, where an SAE is shipped for a top head's layer, the
SAE features that head drives most (direct feature attribution, :mod:`saes.attribution`).

Cost. The exact sweeps run one patched pass per component over the pairs. On the organism
(4 layers) that is nothing; on SmolLM2 (30 layers x 9 heads, CPU) one z sweep costs about
5 s CPU per pair on the fast engine (30-40 s on the hook engine) on one thread, so
:func:`default_config` runs the exact sweeps on the first ``n_exact`` pairs only,
attribution (one forward + backward) on all ``n`` as well, head outputs denoising only,
sublayers by layer, and path patching down to the name movers (figures in
:data:`SMOLLM2_DEFAULTS`). What was run is in :attr:`CircuitAnalysis.notes` and in the
report's manifest.

:mod:`analyses.reports.circuit` renders the result; nothing here writes files.

Under torchrun (``attnlab report circuit --nproc N``) the exact sweeps and attribution shard
their pairs over the ranks and merge them (:func:`_sharded`, equal to one process up to float
rounding); accuracy, path patching, the impairment and the SAE features run whole on every
rank (they are not sharded), so every rank returns the same analysis.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm

from analyses.causal.attribution import attribute, correlation
from analyses.causal.distributed import merge_ranks, shard_task
from analyses.causal.impairment import (
    ImpairmentConfig,
    ImpairmentResult,
    first_items,
    selective_impairment,
)
from analyses.causal.patching import PatchingConfig, pair_from_task, patch
from analyses.causal.path_patching import PathPatchingConfig, path_patch
from analyses.causal.task_sets import (
    analysis_tasks,
    check_tasks,
    exact_pairs,
    impairment_note,
    impairment_tasks,
    load_model_task,
    model_note,
)
from probes.hooks import record

log = logging.getLogger(__name__)
STEPS = 7
SUBLAYERS = ("attn_out", "mlp_out")


@dataclass(frozen=True)
class CircuitConfig:
    task: str = "ioi"  # a data.tasks task name of the model
    n: int = 64  # prompt pairs: accuracy, attribution, the impairment's items
    seed: int = 0  # item sampling (references use seed + 1)
    top_k: int = 3  # heads per role / ablated set
    n_random: int = 5  # random head sets in the ablation baseline
    ablation: str = "mean"  # zero | mean | resample
    # exact sweeps, path patching and the impairment's head choice run on the first n_exact
    # of the n pairs (None = all n); attribution then also runs on those, for the correlation
    n_exact: int | None = None
    noising: bool = True  # also the exact noising sweep of the head outputs
    position_sweeps: bool = True  # resid_pre/attn_out/mlp_out by layer x position; False:
    # attn_out/mlp_out by layer (patching the whole residual stream would just restore it)
    role_depth: int = 3  # IOI path-patching levels: name movers, + S-inhibition, + induction
    impairment_tasks: tuple[str, ...] | None = None  # None: task_sets.impairment_tasks(model)

    def __post_init__(self) -> None:
        if self.n < 2 or self.top_k < 1:
            raise ValueError(f"n must be >= 2 and top_k >= 1, got {self.n}, {self.top_k}")
        if self.n_exact is not None and not 2 <= self.n_exact <= self.n:
            raise ValueError(f"n_exact must be in 2..n={self.n} or None, got {self.n_exact}")
        if self.role_depth not in (1, 2, 3):
            raise ValueError(f"role_depth must be 1, 2 or 3, got {self.role_depth}")

    @property
    def exact_pairs(self) -> int:
        return self.n if self.n_exact is None else self.n_exact


#: SmolLM2's report defaults. Measured for ``attnlab report circuit --model smollm2 --task ioi``
#: (IOI prompts are 16 tokens) with one torch thread on a 2-core machine shared with other
#: jobs (load ~4; the process got 55% of a core): 11.4 min wall, 6.3 CPU-minutes. Steps:
#: accuracy 17 s, exact z denoising on 8 pairs 231 s (270 heads, hook engine; measured before
#: the fast engine took Llama-style models, which does it in ~40 s CPU), attention/MLP
#: outputs by layer 80 s, attribution on 8 + 32 pairs 19 s, direct-path patching 25 s,
#: selective impairment 286 s (the recall z sweep on 8 pairs, then 3 tasks x 32 items x
#: (2 + 3 random) head sets). Not run by default: the z noising sweep (another ~230 s),
#: resid_pre/attn_out/mlp_out by layer x position (~110 s per 2 pairs each), S-inhibition and
#: induction path patching (two passes per sender each).
SMOLLM2_DEFAULTS: dict = dict(n=32, n_exact=exact_pairs("smollm2"), noising=False,
                              position_sweeps=False, role_depth=1, n_random=3)
MODEL_DEFAULTS: dict[str, dict] = {"smollm2": SMOLLM2_DEFAULTS}


def default_config(model_name: str, **given) -> CircuitConfig:
    """The report's config for ``model_name``: its defaults, overridden by the given values
    that are not None (e.g. the CLI's typed flags)."""
    fields = dict(MODEL_DEFAULTS.get(model_name, {}))
    typed = {k: v for k, v in given.items() if v is not None}
    fields.update(typed)
    if "n_exact" not in typed and fields.get("n_exact") is not None and "n" in typed:
        fields["n_exact"] = min(fields["n_exact"], typed["n"])  # a small --n bounds both
    return CircuitConfig(**fields)


class CircuitAnalysis(NamedTuple):
    config: CircuitConfig
    model: str
    accuracy: pd.DataFrame  # run, accuracy, logit_diff
    patching: pd.DataFrame  # schema `patching`: every sweep (all on the exact pairs, column
    # `pairs`), path patching included
    attribution_r: float  # Pearson r, attribution vs exact, z denoising, the same pairs
    top_heads: pd.DataFrame  # layer, head, denoising, noising, attribution
    roles: pd.DataFrame  # role, layer, head, effect, normalized_effect, receivers
    impairment: ImpairmentResult
    sae_features: pd.DataFrame | None  # layer, head, feature, mean_dfa, mean_act
    sae_note: str  # what was found about SAEs
    notes: tuple[str, ...] = ()  # what was run, on what (model, pairs, choices)
    attribution_r_all: float | None = None  # attribution on all n pairs vs exact on n_exact
    attribution_all: pd.DataFrame | None = None  # that attribution sweep (n_exact < n only)
    seconds: float | None = None  # wall time of the analysis


def analyse_circuit(loaded, config: CircuitConfig, progress: bool = True) -> CircuitAnalysis:
    """Run every analysis of the report (progress bar over the steps)."""
    from data.tasks import accuracy, logit_diff

    if loaded.kind != "decoder":
        raise ValueError(f"circuit reports need a decoder with task datasets; {loaded.name!r} "
                         "is an encoder: use `attnlab patch --model minilm` instead")
    start = time.perf_counter()
    model, name = loaded.model, loaded.name
    sources = _sources(name, config)
    bar = tqdm(total=STEPS, desc=f"circuit report {config.task}", disable=not progress)
    ds = load_model_task(name, config.task, config.n, config.seed)
    exact_ds = first_items(ds, config.n_exact)
    epair = pair_from_task(exact_ds)
    with torch.no_grad():
        lc, lr = model(ds.clean_tokens), model(ds.corrupted_tokens)
    acc = pd.DataFrame({"run": ["clean", "corrupted"],
                        "accuracy": [accuracy(lc, ds), _corrupted_accuracy(lr, ds)],
                        "logit_diff": [logit_diff(lc, ds).mean().item(),
                                       logit_diff(lr, ds).mean().item()]})
    bar.update()
    methods = ("denoising", "noising") if config.noising else ("denoising",)
    heads = {m: _sharded(patch, model, exact_ds, PatchingConfig("z", method=m))
             for m in methods}
    bar.update()
    sweeps = list(heads.values()) + _sublayer_sweeps(model, exact_ds, config)
    bar.update()
    attr = _sharded(attribute, model, exact_ds, PatchingConfig("z"))
    r = correlation(heads["denoising"], attr)
    attr_all, r_all = None, None
    if config.exact_pairs < config.n:
        attr_all = _sharded(attribute, model, ds, PatchingConfig("z")).assign(pairs=config.n)
        r_all = correlation(heads["denoising"], attr_all)
    bar.update()
    roles, paths = _roles(model, exact_ds, epair, config)
    bar.update()
    imp = _impairment(model, name, ds, heads["denoising"], sources, config)
    bar.update()
    top = top_head_table(heads["denoising"], heads.get("noising"), attr, config.top_k)
    if attr_all is not None:
        top = top.merge(_effects(attr_all, "attribution_all_pairs"), on=["layer", "head"],
                        how="left")
    sae, note = sae_features(loaded, ds, top)
    bar.update()
    bar.close()
    table = pd.concat([t.assign(pairs=config.exact_pairs) for t in sweeps + [attr, paths]],
                      ignore_index=True)
    notes = _notes(name, config)
    return CircuitAnalysis(config, name, acc, table, r, top, roles, imp, sae, note, notes,
                           r_all, attr_all, time.perf_counter() - start)


def _pairing(model_name: str, config: CircuitConfig) -> tuple[str, ...]:
    """The families selective impairment contrasts (the model's default unless given)."""
    if config.impairment_tasks is None:
        return impairment_tasks(model_name)
    return check_tasks(model_name, config.impairment_tasks)


def _sources(model_name: str, config: CircuitConfig) -> tuple[str, ...]:
    """The families whose top heads selective impairment ablates: the report's task first."""
    return tuple(dict.fromkeys((config.task, *_pairing(model_name, config))))


def _sharded(sweep, model, ds, cfg: PatchingConfig) -> pd.DataFrame:
    """The table of ``sweep`` (:func:`patch` or :func:`attribute`) over the pairs of ``ds``.

    Under torchrun each rank sweeps its block of the pairs and the ranks' results are merged
    (pair-weighted means, :mod:`analyses.causal.distributed`); in one process it is
    ``sweep(model, pair_from_task(ds), cfg).table``.
    """
    part = pair_from_task(shard_task(ds))
    return merge_ranks(sweep(model, part, cfg), part, cfg).table


def _sublayer_sweeps(model, ds, config: CircuitConfig) -> list[pd.DataFrame]:
    if config.position_sweeps:
        return [_sharded(patch, model, ds, PatchingConfig(c, per_position=True))
                for c in ("resid_pre", *SUBLAYERS)]
    return [_sharded(patch, model, ds, PatchingConfig(c)) for c in SUBLAYERS]


def _impairment(model, name: str, ds, denoising: pd.DataFrame, sources, config: CircuitConfig):
    """Selective impairment on every task the model does (and the source tasks).

    The report's own z denoising sweep is the one the impairment would run on its task.
    """
    tasks = list(dict.fromkeys([*analysis_tasks(name), *sources]))
    data = {t: ds if t == config.task else load_model_task(name, t, config.n, config.seed)
            for t in tasks}
    refs = {t: load_model_task(name, t, config.n, config.seed + 1) for t in tasks}
    return selective_impairment(model, data, refs, ImpairmentConfig(
        sources, k=config.top_k, n_random=config.n_random, ablation=config.ablation,
        n_patch=config.n_exact), sweeps={config.task: denoising})


def _notes(name: str, config: CircuitConfig) -> tuple[str, ...]:
    """What the report ran on: the model, the pairs of each step, the choices made."""
    n, ne = config.n, config.exact_pairs
    notes = [model_note(name)] if model_note(name) else []
    notes += [f"{n} clean/corrupted pairs (seed {config.seed}) for accuracy, attribution and "
              f"the ablations; {ne} of them for exact patching, path patching and the "
              "impairment's head choice"
              + (", attribution also on those for the correlation" if ne < n else ""),
              "head outputs: denoising" + (" and noising" if config.noising else
                                           " only (noising skipped to bound the cost)"),
              "residual stream, attention and MLP outputs by layer x position"
              if config.position_sweeps else
              "attention and MLP outputs by layer (per-position sweeps skipped to bound the "
              "cost)",
              {1: "path patching: name movers (direct path to the logits)",
               2: "path patching: name movers, S-inhibition",
               3: "path patching: name movers, S-inhibition, induction/duplicate-token"}
              [config.role_depth] if config.task == "ioi" else
              "path patching: each head's direct path to the logits",
              impairment_note(name, _pairing(name, config))
              + ("" if config.task in _pairing(name, config) else
                 f"; the top {config.task} heads are ablated too")]
    return tuple(notes)


def _corrupted_accuracy(logits, ds) -> float:
    pred = logits[:, -1].argmax(-1)
    return (pred == ds.corrupted_answer_ids).float().mean().item()


def _roles(model, ds, pair, config):
    """IOI: Wang et al.'s roles; other tasks: each head's direct path to the logits."""
    if config.task == "ioi":
        from analyses.causal.ioi import ioi_circuit

        res = ioi_circuit(model, ds, k=config.top_k, seed=config.seed, depth=config.role_depth)
        return res.roles, res.paths
    direct = path_patch(model, pair, PathPatchingConfig(method="denoising", freeze_mlps=True))
    best = direct.sort_values("effect", ascending=False).head(config.top_k)
    roles = pd.DataFrame({"role": "direct_effect", "layer": best.layer, "head": best["head"],
                          "effect": best.effect, "normalized_effect": best.normalized_effect,
                          "receivers": best.receivers})
    return roles.reset_index(drop=True), direct


def top_head_table(den: pd.DataFrame, noi: pd.DataFrame | None, attr: pd.DataFrame, k: int):
    """The k heads with the largest denoising effect, with their noising/attribution effects
    (noising NaN when that sweep was not run)."""
    keys = ["layer", "head"]
    t = _effects(den, "denoising")
    t = (t.merge(_effects(noi, "noising"), on=keys) if noi is not None
         else t.assign(noising=float("nan")))
    t = t.merge(_effects(attr, "attribution"), on=keys)
    return t.sort_values("denoising", ascending=False).head(k).reset_index(drop=True)


def _effects(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """layer, head and the normalised effect renamed to ``column``."""
    keys = ["layer", "head"]
    return table[keys + ["normalized_effect"]].rename(columns={"normalized_effect": column})


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
