"""`attnlab redundancy`: He et al. similarity scores, layer dropping, speedup, head importance.

Scores every attention / MLP sublayer and block by 1 - cos(input, output) (He et al. 2024),
drops the most redundant ones (the computation is skipped), and measures task performance and
wall-time speedup after each drop against a random-drop baseline. Writes a run with tables
`redundancy`, `drop_curve`, `speedup` (and `head_importance` with --heads), the He et al.
comparison in the manifest, and `redundancy.html` (the report's figures).

    attnlab redundancy --model organism --strategy joint --max-drop 6 --iterative --heads
    attnlab redundancy --model minilm --strategy all
    attnlab redundancy --model smollm2     # attn mlp joint, 8 drops: minutes on a CPU
    attnlab redundancy --model organism --nproc 2   # prompts sharded over 2 processes
"""

from __future__ import annotations

from analyses.cli.checks import MAX_ITEMS, UsageError, check_int, check_unique, conflict, given
from analyses.cli.options import add_command, add_model

STRATEGY_CHOICES = ("attn", "mlp", "block", "joint", "all")
MODELS = ("organism", "minilm", "smollm2")
DEFAULT_N_ITEMS, DEFAULT_HEAD_ITEMS = 64, 32
HELP = "layer redundancy (He et al. 2024): scores, drop curves, speedup, head importance"


def register(sub, common) -> None:
    p = add_command(sub, common, "redundancy", run, HELP, __doc__)
    add_model(p, default=None, help="'organism', 'minilm' or 'smollm2'")
    p.add_argument("--strategy", default=None, nargs="+", choices=STRATEGY_CHOICES,
                   help="one or more of attn | mlp | block | joint (attention and MLP ranked "
                   "together) | all (default: joint; smollm2: attn mlp joint)")
    p.add_argument("--max-drop", type=int, default=None,
                   help="components to drop per strategy (default: half the model's layers, "
                   "as far as He et al. prune attention layers: organism 2, minilm 3, "
                   "smollm2 8 (its study's preset))")
    p.add_argument("--iterative", action="store_true",
                   help="also run the iterative plan (re-score after every drop)")
    p.add_argument("--heads", action="store_true", help="also compute per-head importance")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per model, median (default 5)")
    p.add_argument("--random-seeds", type=int, nargs="*", default=None,
                   help="seeds of the random-drop baseline (default 0 1; smollm2: 0)")
    p.add_argument("--n-items", type=int, default=None,
                   help=f"task items per task (default {DEFAULT_N_ITEMS}; smollm2: 24)")
    p.add_argument("--n-sentences", type=int, default=None,
                   help="minilm: evaluation sentences (default: all built-in ones); smollm2: "
                   "held-out LM-loss sentences (default 48)")
    p.add_argument("--head-items", type=int, default=None,
                   help=f"organism task items per task for --heads (default {DEFAULT_HEAD_ITEMS})")
    p.add_argument("--no-figures", action="store_true", help="skip redundancy.html")


def flag_defaults(model: str) -> dict:
    """Values of the flags not typed: the command's own, or SmolLM2's (a 30-layer model on a
    CPU: ``analyses.redundancy.study.SMOLLM2_CONFIG``, which finishes in minutes)."""
    if model != "smollm2":
        return {"strategy": ["joint"], "repeats": 5, "random_seeds": [0, 1]}
    from analyses.redundancy.study import default_config

    c = default_config(model)
    return {"strategy": list(c.strategies), "max_drop": c.max_drop,
            "repeats": c.eval.timing_repeats, "random_seeds": list(c.eval.random_seeds),
            "n_items": c.eval.n_items, "n_sentences": c.eval.n_sentences}


def check_redundancy(args) -> None:
    """Every argument, before the model loads; fills in the defaults of the organism's sizes."""
    if args.model not in MODELS:
        raise UsageError(f"--model must be 'organism' or 'minilm' or 'smollm2', "
                         f"got {args.model!r}")
    if args.model == "minilm":
        for flag in given(args, "n_items", "head_items"):
            raise conflict(flag, "--model minilm", "it counts organism task items; minilm is "
                           "evaluated on sentences (--n-sentences)")
    elif args.model == "organism":
        for flag in given(args, "n_sentences"):
            raise conflict(flag, "--model organism", "it counts encoder sentences; the "
                           "organism is evaluated on task items (--n-items)")
    if not args.heads:
        for flag in given(args, "head_items"):
            raise conflict(flag, "no --heads", "it sizes the head importance; add --heads")
    for name, value in flag_defaults(args.model).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    check_unique("--strategy", args.strategy)
    check_int("--max-drop", args.max_drop, 0)
    check_int("--repeats", args.repeats, 1)
    check_int("--n-items", args.n_items, 1, MAX_ITEMS)
    check_int("--n-sentences", args.n_sentences, 4)
    check_int("--head-items", args.head_items, 2, MAX_ITEMS)
    for seed in args.random_seeds:
        check_int("--random-seeds", seed, 0)
    check_unique("--random-seeds", args.random_seeds)
    args.n_items = DEFAULT_N_ITEMS if args.n_items is None else args.n_items
    args.head_items = DEFAULT_HEAD_ITEMS if args.head_items is None else args.head_items


def _config(args):
    import dataclasses

    from analyses.redundancy.plans import STRATEGIES
    from analyses.redundancy.study import default_config

    base = default_config(args.model)  # what has no flag (smollm2: curve points, timing set)
    strategies = STRATEGIES if "all" in args.strategy else tuple(args.strategy)
    return dataclasses.replace(
        base, strategies=strategies, max_drop=args.max_drop, iterative=args.iterative,
        heads=args.heads, head_items=args.head_items,
        eval=dataclasses.replace(base.eval, n_items=args.n_items, timing_repeats=args.repeats,
                                 random_seeds=tuple(args.random_seeds),
                                 n_sentences=args.n_sentences))


def plan_line(args, cfg) -> str:
    """The drop plan in words, printed before the work starts."""
    plans = "one-shot" + (" and iterative" if args.iterative else "")
    seeds = ", ".join(str(s) for s in args.random_seeds) or "none"
    return (f"plan: drop up to {args.max_drop} component(s) per strategy ({plans}, against "
            f"random drops with seeds {seeds}) of the {cfg.n_layers}-layer model; "
            "--max-drop changes it")


def run(args) -> int:
    import dataclasses

    import torch

    from analyses.redundancy.plans import default_max_drop
    from analyses.redundancy.study import run_redundancy, write_run
    from data.progress import phase
    from data.store import RunStore
    from probes.models import load_model

    check_redundancy(args)
    config = _config(args)  # bad arguments fail before the model loads
    with phase(f"loading {args.model}"):
        loaded = load_model(args.model, device=args.device)
    if args.max_drop is None:
        args.max_drop = default_max_drop(loaded.cfg)
        config = dataclasses.replace(config, max_drop=args.max_drop)
    config.drop_counts(loaded.cfg)  # too many drops: a clear error before the run starts
    torch.manual_seed(0)
    store = RunStore(args.runs_dir)
    cfg = {"strategy": args.strategy, "max_drop": args.max_drop, "iterative": args.iterative,
           "heads": args.heads, "repeats": args.repeats, "random_seeds": args.random_seeds,
           "n_items": args.n_items, "n_sentences": args.n_sentences,
           "eval_every": config.eval_every, "time_last_only": config.time_last_only,
           "timing_prompts": config.timing_prompts,
           "device": str(loaded.cfg.device), "torch_threads": torch.get_num_threads()}
    print(f"redundancy on {args.model}: " + ", ".join(f"{k} {v}" for k, v in cfg.items()))
    print(plan_line(args, loaded.cfg))
    from analyses.cli.launch import start_run  # --nproc: rank 0 owns the run
    from probes.distributed import rank_info

    with start_run(store, command="redundancy", model=args.model, config=cfg) as rec:
        with phase(f"redundancy study ({', '.join(config.strategies)}; scores, drop curves, "
                   "speedup)"):
            result = run_redundancy(loaded, config)
        if not rank_info().is_main:  # rank 0 writes the tables and redundancy.html
            return 0
        write_run(rec, result, figures=not args.no_figures)
    from analyses.reports.redundancy import last_point_table

    print(f"run {rec.run_id}: {result.comparison.verdict}")
    print(last_point_table(result.drop_curve).to_string(index=False))
    sp = result.speedup.sort_values("n_dropped").groupby(["strategy", "mode"]).tail(1)
    for r in sp.itertuples():
        print(f"  {r.strategy}/{r.mode}: {r.n_dropped} dropped -> {r.speedup:.2f}x median "
              f"({r.full_ms:.1f} -> {r.pruned_ms:.1f} ms), {r.speedup_min:.2f}x best-of, "
              f"{r.speedup_cpu:.2f}x CPU time ({r.full_cpu_ms:.1f} -> {r.pruned_cpu_ms:.1f} ms); "
              f"{r.speedup_macs:.2f}x by multiply-adds")
    return 0
