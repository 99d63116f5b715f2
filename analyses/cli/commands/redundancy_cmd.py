"""`attnlab redundancy`: He et al. similarity scores, layer dropping, speedup, head importance.

Scores every attention / MLP sublayer and block by 1 - cos(input, output) (He et al. 2024),
drops the most redundant ones (the computation is skipped), and measures task performance and
wall-time speedup after each drop against a random-drop baseline. Writes a run with tables
`redundancy`, `drop_curve`, `speedup` (and `head_importance` with --heads), the He et al.
comparison in the manifest, and `redundancy.html` (the report's figures).

    attnlab redundancy --model organism --strategy joint --max-drop 6 --iterative --heads
    attnlab redundancy --model minilm --strategy all
"""

from __future__ import annotations

from analyses.cli.options import add_command, add_model

STRATEGY_CHOICES = ("attn", "mlp", "block", "joint", "all")
HELP = "layer redundancy (He et al. 2024): scores, drop curves, speedup, head importance"


def register(sub, common) -> None:
    p = add_command(sub, common, "redundancy", run, HELP, __doc__)
    add_model(p, default=None, help="'organism' or 'minilm'")
    p.add_argument("--strategy", default="joint", choices=STRATEGY_CHOICES,
                   help="attn | mlp | block | joint (attention and MLP ranked together) | all")
    p.add_argument("--max-drop", type=int, default=None,
                   help="modules to drop (default: all the strategy can)")
    p.add_argument("--iterative", action="store_true",
                   help="also run the iterative plan (re-score after every drop)")
    p.add_argument("--heads", action="store_true", help="also compute per-head importance")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per model (median)")
    p.add_argument("--random-seeds", type=int, nargs="*", default=[0, 1],
                   help="seeds of the random-drop baseline")
    p.add_argument("--n-items", type=int, default=64, help="organism items per task")
    p.add_argument("--n-sentences", type=int, default=None,
                   help="encoder evaluation sentences (default: all built-in ones)")
    p.add_argument("--head-items", type=int, default=32,
                   help="organism task items per task for --heads")
    p.add_argument("--no-figures", action="store_true", help="skip redundancy.html")


def _config(args):
    from analyses.redundancy.dropping import STRATEGIES
    from analyses.redundancy.evaluation import DropEvalConfig
    from analyses.redundancy.study import RedundancyConfig

    strategies = STRATEGIES if args.strategy == "all" else (args.strategy,)
    return RedundancyConfig(
        strategies=strategies, max_drop=args.max_drop, iterative=args.iterative,
        heads=args.heads, head_items=args.head_items,
        eval=DropEvalConfig(n_items=args.n_items, timing_repeats=args.repeats,
                            random_seeds=tuple(args.random_seeds),
                            n_sentences=args.n_sentences))


def run(args) -> int:
    import torch

    from analyses.redundancy.study import run_redundancy, write_run
    from data.store import RunStore
    from probes.models import load_model

    config = _config(args)  # bad arguments fail before the model loads
    if args.model not in ("organism", "minilm"):
        raise ValueError(f"--model must be 'organism' or 'minilm', got {args.model!r}")
    loaded = load_model(args.model, device=args.device)
    config.drop_counts(loaded.cfg)  # too many drops: a clear error before the run starts
    torch.manual_seed(0)
    store = RunStore(args.runs_dir)
    cfg = {"strategy": args.strategy, "max_drop": args.max_drop, "iterative": args.iterative,
           "heads": args.heads, "repeats": args.repeats, "random_seeds": args.random_seeds,
           "n_items": args.n_items, "n_sentences": args.n_sentences,
           "device": str(loaded.cfg.device), "torch_threads": torch.get_num_threads()}
    with store.start_run(command="redundancy", model=args.model, config=cfg) as rec:
        result = run_redundancy(loaded, config)
        write_run(rec, result, figures=not args.no_figures)
    print(f"run {rec.run_id}: {result.comparison.verdict}")
    sp = result.speedup.sort_values("n_dropped").groupby(["strategy", "mode"]).tail(1)
    for r in sp.itertuples():
        print(f"  {r.strategy}/{r.mode}: {r.n_dropped} dropped -> {r.speedup:.2f}x median "
              f"({r.full_ms:.1f} -> {r.pruned_ms:.1f} ms), {r.speedup_min:.2f}x best-of")
    return 0
