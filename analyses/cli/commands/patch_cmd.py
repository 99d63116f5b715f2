"""`attnlab patch` and `attnlab ablate`: causal interventions on a task, saved as a run.

    attnlab patch --model organism --task ioi --component z
    attnlab patch --model organism --task ioi --component resid_pre --per-position --method noising
    attnlab patch --model organism --task ioi --component z --method attribution
    attnlab patch --model organism --task ioi --component path --receivers logits
    attnlab patch --model organism --task ioi --component path --receivers L2H0q,L2H1kv
    attnlab patch --model minilm --component z \\
        --clean "The cat sat on the mat." --corrupted "The dog sat on the mat."
    attnlab ablate --model organism --task recall --heads L0H2,L1H3 --method mean
    attnlab ablate --model organism --impairment --k 3

Heads are typed as ``L1H2`` or ``1.2`` (docs/GLOSSARY.md) and printed as ``L1H2``.
Every argument is checked before the model loads, and against its sizes right after: a flag
that does not apply (``--receivers`` without ``--component path``, ``--heads`` with
``--impairment``, ``--clean`` on a decoder) is an error naming both flags, never ignored.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from analyses.cli.checks import (
    MAX_ITEMS,
    UsageError,
    check_head_count,
    check_heads,
    check_int,
    check_layers,
    check_task,
    check_task_sample,
    conflict,
    given,
    model_kind,
    parse_ints,
)
from analyses.cli.options import HEADS_HELP, add_command, add_model, add_sample, add_task

COMPONENTS = ("z", "resid_pre", "resid_mid", "attn_out", "mlp_out", "q", "k", "v", "pattern",
              "path")
METHODS = ("denoising", "noising", "attribution", "attribution-noising")
PATH_METHODS = ("denoising", "noising")  # path patching is exact: no attribution estimate
RECEIVERS_HELP = ("path patching receivers: 'logits' (default), or comma-separated heads "
                  "(L<layer>H<head> or <layer>.<head>), each followed by the inputs that receive "
                  "(q, k, v; default all), e.g. 'L3H1q,L3H2' or '3.1q,3.2'")
PATCH_HELP = "activation / attribution / path patching sweep"
PATCH_DESCRIPTION = (
    "Patch every component of one kind (clean <-> corrupted) and save the effects as a "
    "`patching` table in a new run. Metric: the task's logit difference (decoders) or the "
    "sentence-embedding cosine (encoders, --clean/--corrupted).")
ABLATE_HELP = "ablate heads/sublayers; selective impairment"
ABLATE_DESCRIPTION = (
    "Zero/mean/resample-ablate heads and sublayers and report accuracy on every task the "
    "model does, or (--impairment) ablate the top heads of two task families found by "
    "patching (recall and reasoning; recall and ioi on smollm2, --impairment-tasks) next to "
    "random head sets of the same size.")
DEFAULT_TASK, DEFAULT_N, DEFAULT_SEED = "ioi", 64, 0
DEFAULT_K, DEFAULT_N_RANDOM = 3, 5
IMPAIRMENT_TASKS_HELP = ("impairment: comma-separated task families whose top heads are "
                         "ablated (default recall,reasoning; recall,ioi on smollm2, which "
                         "does not do reasoning)")
#: What each patching engine is (``PatchingResult.engine``).
ENGINE_WORDS = {"fast": "suffix recompute from the first differing position",
                "hooks": "one hooked forward pass per patch"}
#: A receiver: a head, then optionally the inputs that receive, as ``q``/``kv`` or ``(kv)``.
_RECEIVER = re.compile(r"^(?P<head>.+?)(?:\((?P<paren>[qkv]+)\)|(?P<inputs>[qkv]*))$")


def register(sub, common) -> None:
    p = add_command(sub, common, "patch", run, PATCH_HELP, PATCH_DESCRIPTION)
    add_model(p)
    add_task(p, None, f"data.tasks task (decoders; default {DEFAULT_TASK})")
    p.add_argument("--component", default="z", choices=COMPONENTS,
                   help="z = each head's output; path = head->receiver path patching")
    p.add_argument("--per-position", action="store_true", help="also split by position")
    p.add_argument("--method", default="denoising", choices=METHODS,
                   help="attribution* also runs the exact sweep and reports the correlation "
                   "(not with --component path)")
    p.add_argument("--receivers", default=None, help=RECEIVERS_HELP)
    p.add_argument("--layers", default=None, help="comma-separated layers (default all)")
    add_sample(p, "prompt pairs", DEFAULT_N, when="decoders")
    p.add_argument("--clean", action="append", help="encoder: a clean sentence (repeatable)")
    p.add_argument("--corrupted", action="append", help="encoder: its corrupted twin")
    p.add_argument("--top", type=int, default=10, help="rows to print")

    a = add_command(sub, common, "ablate", run_ablate, ABLATE_HELP, ABLATE_DESCRIPTION)
    add_model(a)
    add_task(a, None, "only this task (default: every task)")
    a.add_argument("--heads", default=None, help=HEADS_HELP)
    a.add_argument("--sublayers", default=None,
                   help="comma-separated sublayers, e.g. attn1,mlp2")
    a.add_argument("--method", default="mean", choices=("zero", "mean", "resample"))
    a.add_argument("--impairment", action="store_true", help="selective-impairment experiment")
    a.add_argument("--k", type=int, default=None,
                   help=f"impairment: heads per set (default {DEFAULT_K})")
    a.add_argument("--n-random", type=int, default=None,
                   help=f"impairment: random sets (default {DEFAULT_N_RANDOM})")
    a.add_argument("--impairment-tasks", default=None, help=IMPAIRMENT_TASKS_HELP)
    add_sample(a, "task items per task")


def parse_receivers(text: str):
    """Receivers of ``--receivers``: () for 'logits', else one Receiver per head.

    A head is ``L3H1`` or ``3.1``; the inputs that receive follow it (``L3H1q``, ``3.1kv``,
    ``L3H1(q)`` as the receivers are printed), all of q, k, v when none is given.
    """
    from analyses.causal.path_patching import Receiver
    from data.notation import parse_head

    if text.strip() == "logits":
        return ()
    out, seen = [], set()
    for item in (s.strip() for s in text.split(",")):
        m = _RECEIVER.match(item)
        try:
            head = parse_head(m["head"] if m else item)
        except ValueError:
            raise UsageError(f"receiver {item!r}: write 'logits' or heads as LAYER.HEAD[qkv] "
                             "or L<layer>H<head>[qkv], e.g. '3.1q,3.2' or 'L3H1q,L3H2'") from None
        if head in seen:
            raise UsageError(f"receiver {head.label} is listed twice in {text!r}")
        seen.add(head)
        inputs = tuple(dict.fromkeys(m["paren"] or m["inputs"] or "qkv"))
        out.append(Receiver(head.layer, head.head, inputs))
    if out and max(r.layer for r in out) == 0:
        raise UsageError(f"--receivers {text}: heads of layer 0 have no sender heads upstream; "
                         "give a receiver in a later layer, or 'logits'")
    return tuple(out)


def check_patch(args) -> None:
    """Every ``attnlab patch`` argument, before the model loads; fills in the defaults."""
    check_int("--top", args.top, 1)
    if args.component == "path":
        if args.method not in PATH_METHODS:
            raise conflict(f"--method {args.method}", "--component path",
                           "path patching is exact; use --method denoising or noising")
        for flag in given(args, "per_position", "layers"):
            raise conflict(flag, "--component path", "path patching sweeps every sender "
                           "head below the receivers, over all positions")
        args.receivers = args.receivers if args.receivers is not None else "logits"
        parse_receivers(args.receivers)
    elif args.receivers is not None:
        raise conflict("--receivers", f"--component {args.component}",
                       "receivers are for --component path")
    if args.layers is not None:
        parse_ints("--layers", args.layers)
    if model_kind(args.model) == "encoder":
        for flag in given(args, "task", "n", "seed"):
            raise conflict(flag, f"--model {args.model}", "an encoder patches the "
                           "--clean/--corrupted sentences, not task items")
        if not args.clean or not args.corrupted:
            raise UsageError(f"--model {args.model} is an encoder: give --clean and "
                             "--corrupted sentences (same token count), e.g. --clean 'The cat "
                             "sat.' --corrupted 'The dog sat.'")
        if len(args.clean) != len(args.corrupted):
            raise UsageError(f"{len(args.clean)} --clean but {len(args.corrupted)} "
                             "--corrupted sentences: give them in pairs")
        return
    for flag in given(args, "clean", "corrupted"):
        raise conflict(flag, f"--model {args.model}", "sentences are for encoders (minilm); "
                       "a decoder patches --task prompt pairs")
    args.task = check_task("--task", DEFAULT_TASK if args.task is None else args.task)
    args.n = check_int("--n", _default_n(args) if args.n is None else args.n, 1, MAX_ITEMS)
    args.seed = check_int("--seed", DEFAULT_SEED if args.seed is None else args.seed, 0)


def _default_n(args) -> int:
    """--n when not typed: 64 pairs, fewer on a model where an exact sweep is slow (said)."""
    from analyses.causal.task_sets import exact_pairs

    n = exact_pairs(args.model, DEFAULT_N)
    if n != DEFAULT_N:
        print(f"--n {n}: the default number of pairs on {args.model} (an exact sweep there "
              "costs one patched pass per component and pair; pass --n for more)")
    return n


def check_patch_sizes(args, loaded) -> None:
    """The arguments that need the model's sizes, right after it loads."""
    if args.layers is not None:
        check_layers("--layers", parse_ints("--layers", args.layers), loaded.cfg.n_layers)
    if args.component == "path":
        check_heads("--receivers", [(r.layer, r.head) for r in parse_receivers(args.receivers)],
                    loaded.cfg)


def _pair(args, loaded):
    from analyses.causal.encoder import sentence_pair
    from analyses.causal.patching import pair_from_task
    from analyses.causal.task_sets import load_model_task

    if loaded.kind == "encoder":
        return sentence_pair(loaded, args.clean, args.corrupted)
    from analyses.causal.distributed import shard_task  # --nproc: this rank's pairs

    dataset = load_model_task(loaded.name, args.task, args.n, args.seed)
    return pair_from_task(shard_task(dataset) if args.component != "path" else dataset)


class Sweep(NamedTuple):
    """What a sweep wrote and what the user needs to read it."""

    table: Any  # the `patching` table
    note: str  # attribution: its correlation with the exact sweep ("" otherwise)
    engine: str  # how the patched runs were computed
    clean_metric: float  # the metric on the clean prompts (mean over pairs)
    corrupted_metric: float  # ... on the corrupted prompts


def path_baselines(table, method: str) -> tuple[float, float]:
    """(clean, corrupted) metric of a path-patching table, recovered from its columns: the
    baseline run is ``patched_metric - effect`` (the corrupted run when denoising, the clean
    one when noising) and ``effect / normalized_effect`` is clean - corrupted."""
    base = float((table.patched_metric - table.effect).iloc[0])
    rows = table[table.normalized_effect.abs() > 1e-9]
    gap = float((rows.effect / rows.normalized_effect).iloc[0]) if len(rows) else float("nan")
    return (base + gap, base) if method == "denoising" else (base, base - gap)


def _sweep(args, loaded, pair) -> Sweep:
    """The requested sweep, with a bar on a terminal."""
    import pandas as pd

    from analyses.causal.attribution import attribute, correlation, pairs_per_chunk
    from analyses.causal.patching import PatchingConfig, patch
    from analyses.causal.path_patching import PathPatchingConfig, path_patch
    from data.progress import interactive

    method = "noising" if args.method in ("noising", "attribution-noising") else "denoising"
    if args.component == "path":
        cfg = PathPatchingConfig(parse_receivers(args.receivers), method=method)
        table = path_patch(loaded, pair, cfg, progress=interactive())
        return Sweep(table, "", "hooks (two-pass path patching)", *path_baselines(table, method))
    layers = parse_ints("--layers", args.layers) if args.layers else None
    cfg = PatchingConfig(args.component, args.per_position, method=method, layers=layers)
    from analyses.causal.distributed import merge_ranks  # --nproc: gather the ranks' pairs

    exact = merge_ranks(patch(loaded, pair, cfg, progress=interactive()), pair, cfg)
    engine = f"{exact.engine} ({ENGINE_WORDS.get(exact.engine, 'exact patched runs')})"
    if not args.method.startswith("attribution"):
        return Sweep(exact.table, "", engine, exact.clean_metric, exact.corrupted_metric)
    chunk = pairs_per_chunk(loaded, pair.n_pos, cfg.memory_budget_mb)  # memory: by chunk
    est = merge_ranks(attribute(loaded, pair, cfg, chunk_pairs=chunk), pair, cfg).table
    r = correlation(exact.table, est)
    return Sweep(pd.concat([exact.table, est], ignore_index=True),
                 f"corr(attribution, exact) = {r:.3f}",
                 f"attribution (one gradient pass) beside the exact sweep on {engine}",
                 exact.clean_metric, exact.corrupted_metric)


def sweep_header(args, pair, sweep: Sweep, n_pairs: int | None = None) -> str:
    """The lines printed above the effects: pairs, metric, baselines, engine, sign.

    ``n_pairs``: the pairs of the whole sweep (every rank's under --nproc; default
    ``pair.batch``, this process's)."""
    n_pairs = pair.batch if n_pairs is None else n_pairs
    what = (f"{n_pairs} sentence pair(s)" if args.clean else
            f"{n_pairs} prompt pairs of task {args.task} (seed {args.seed})")
    gap = sweep.clean_metric - sweep.corrupted_metric
    baseline = "corrupted" if args.method in ("denoising", "attribution") else "clean"
    return (f"{what}; metric {pair.metric_name} (mean over pairs): clean "
            f"{sweep.clean_metric:.4f}, corrupted {sweep.corrupted_metric:.4f} "
            f"(gap {gap:.4f}); engine {sweep.engine}\n"
            f"effect = metric(patched) - metric({baseline} run); normalized_effect = effect / "
            "gap: 1 = the patch restores the clean metric, 0 = no change, negative = it moves "
            "the metric away from clean")


def _run_config(args) -> dict:
    """The arguments as the manifest records them (after the defaults were filled in)."""
    skip = ("func", "runs_dir", "device", "writes_runs", "command", "verbose", "debug")
    return {k: v for k, v in vars(args).items() if k not in skip}


def run(args) -> int:
    from data.store import RunStore
    from probes.models import load_model

    check_patch(args)
    loaded = load_model(args.model, device=args.device)
    check_patch_sizes(args, loaded)
    pair = _pair(args, loaded)
    store = RunStore(args.runs_dir)
    from analyses.cli.launch import start_run  # rank 0 owns the run under --nproc

    with start_run(store, command="patch", model=loaded.name, config=_run_config(args)) as run_:
        sweep = _sweep(args, loaded, pair)
        table, note = sweep.table, sweep.note
        run_.write_table("patching", table)
        from probes.distributed import all_gather  # every rank's pairs under --nproc

        n_pairs = sum(all_gather(pair.batch))
        run_.update_manifest(engine=sweep.engine, n_pairs=n_pairs,
                             clean_metric=sweep.clean_metric,
                             corrupted_metric=sweep.corrupted_metric, **({"note": note}
                                                                        if note else {}))
    from analyses.figures.labels import with_head_column

    print(sweep_header(args, pair, sweep, n_pairs))
    top = table.reindex(table.normalized_effect.abs().sort_values(ascending=False).index)
    cols = ["component", "layer", "head", "position", "method", "effect", "normalized_effect"]
    print(with_head_column(top[cols].head(args.top).round(4)).to_string(index=False))
    if note:
        print(note)
    print(f"run {run_.run_id}: {len(table)} rows in table 'patching' ({run_.path})")
    return 0


def _components(args):
    """The heads (L1H2 or 1.2) and sublayers (attn1, mlp2) to ablate; a repeat is an error."""
    from analyses.causal.ablation import Component
    from data.notation import SUBLAYERS, parse_heads

    comps = [Component("head", h.layer, h.head) for h in parse_heads(args.heads or "")]
    for s in (x.strip() for x in (args.sublayers or "").split(",") if x.strip()):
        kind = s.rstrip("0123456789")
        if kind not in SUBLAYERS or kind == s:
            raise UsageError(f"sublayer {s!r}: write attn<layer> or mlp<layer>, e.g. attn1,mlp2")
        comp = Component(kind, int(s[len(kind):]))
        if comp in comps:
            raise UsageError(f"sublayer {comp.label()} is listed twice in {args.sublayers!r}")
        comps.append(comp)
    if not comps:
        raise UsageError("nothing to ablate: give --heads L0H1,... and/or --sublayers "
                         "attn1,mlp2, or --impairment")
    return comps


def check_ablate(args):
    """Every ``attnlab ablate`` argument, before the model loads: the components to ablate
    (None with --impairment); fills in the defaults."""
    check_task_sample(args, "ablate runs task accuracies, use a decoder (e.g. organism)")
    if not args.impairment:
        for flag in given(args, "k", "n_random", "impairment_tasks"):
            raise conflict(flag, "--heads/--sublayers", f"{flag} sizes the --impairment "
                           "experiment's head sets; add --impairment")
        return _components(args)
    for flag in given(args, "heads", "sublayers"):
        raise conflict(flag, "--impairment", "the impairment experiment picks its heads by "
                       "patching; ablate chosen heads without --impairment")
    parse_impairment_tasks(args)
    args.k = check_int("--k", DEFAULT_K if args.k is None else args.k, 1)
    args.n_random = check_int("--n-random",
                              DEFAULT_N_RANDOM if args.n_random is None else args.n_random, 0)
    return None


def parse_impairment_tasks(args) -> tuple[str, ...] | None:
    """--impairment-tasks as task names of --model (None when not given)."""
    from analyses.causal.task_sets import check_tasks

    if args.impairment_tasks is None:
        return None
    try:
        return check_tasks(args.model, [t.strip() for t in args.impairment_tasks.split(",")])
    except ValueError as exc:
        raise UsageError(f"--impairment-tasks {args.impairment_tasks!r}: {exc}") from None


def check_ablate_sizes(args, comps, cfg) -> None:
    """The arguments that need the model's sizes, right after it loads."""
    if comps is None:
        check_head_count("--k", args.k, cfg)
        return
    check_heads("--heads", [(c.layer, c.head) for c in comps if c.kind == "head"], cfg)
    check_layers("--sublayers", [c.layer for c in comps if c.kind != "head"], cfg.n_layers)


def _ablation_table(loaded, args, comps):
    from analyses.causal.ablation import AblationConfig
    from analyses.causal.impairment import ImpairmentConfig, ablation_accuracy, selective_impairment
    from analyses.causal.task_sets import (
        analysis_tasks,
        exact_pairs,
        impairment_note,
        impairment_tasks,
        load_model_task,
    )

    tasks = [args.task] if args.task else analysis_tasks(loaded.name)
    sources = parse_impairment_tasks(args) or impairment_tasks(loaded.name)
    if args.impairment:
        tasks = list(dict.fromkeys(tasks + list(sources)))
    data = {t: load_model_task(loaded.name, t, args.n, args.seed) for t in tasks}
    refs = {t: load_model_task(loaded.name, t, args.n, args.seed + 1) for t in tasks}
    if args.impairment:
        n_patch = exact_pairs(loaded.name)
        cfg = ImpairmentConfig(sources, k=args.k, n_random=args.n_random, ablation=args.method,
                               seed=args.seed, n_patch=n_patch)
        print(impairment_note(loaded.name, sources) + (
            f"; heads chosen by exact z patching on the first {n_patch} pairs of each"
            if n_patch else ""))
        return selective_impairment(loaded, data, refs, cfg).table
    return ablation_accuracy(loaded, data, refs, comps, AblationConfig(args.method, args.seed),
                             name=f"{args.method}_ablation")


def run_ablate(args) -> int:
    from data.progress import phase
    from data.store import RunStore
    from probes.models import load_model

    comps = check_ablate(args)
    loaded = load_model(args.model, device=args.device)
    if loaded.kind != "decoder":
        raise UsageError("ablate runs task accuracies: use a decoder model (e.g. organism)")
    check_ablate_sizes(args, comps, loaded.cfg)
    store = RunStore(args.runs_dir)
    what = ("selective impairment: patching for the head sets, then ablating them on every task"
            if args.impairment else "ablating on every task")
    with store.start_run(command="ablate", model=loaded.name, config=_run_config(args)) as run_:
        with phase(what):
            table = _ablation_table(loaded, args, comps)
        run_.write_table("impairment", table)
    print(table.round(4).to_string(index=False))
    print(f"run {run_.run_id}: table 'impairment' ({run_.path})")
    return 0
