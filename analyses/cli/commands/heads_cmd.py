"""`attnlab heads`: the head explorer's tables for every head of a model, as one run.

Over the clean prompts of the model's default tasks: previous-token, induction and
duplicate-token scores (the latter two on the induction task's repeated tokens), mean entropy,
sink score and rate, mean output norm (table head_scores); each head's top prompts by output
norm with its attention pattern on them (head_top_sequences, head_top_patterns); and the exact
QK decomposition (qk_terms, qk_summary) of the --qk-top heads with the highest induction score,
on the induction task. The dashboard's Heads page shows them, with the ablation importance of a
redundancy run of the same model where the store has one.

    attnlab heads --model organism
    attnlab heads --model smollm2 --n 16 --qk-top 2
    attnlab heads --model organism --nproc 2   # prompts sharded over 2 processes
"""

from __future__ import annotations

from analyses.cli.checks import check_float, check_int, check_task_sample
from analyses.cli.options import add_command, add_model, add_sample


def register(sub, common) -> None:
    p = add_command(sub, common, "heads", run, "per-head scores for the head explorer", __doc__)
    add_model(p, default="organism")
    add_sample(p, "prompts per task", n=32)
    p.add_argument("--top-k", type=int, default=3, help="top prompts kept per head (default 3)")
    p.add_argument("--qk-top", type=int, default=2,
                   help="QK-decompose this many top induction heads (default 2; 0 = none)")
    p.add_argument("--sink-epsilon", type=float, default=0.3,
                   help="a query is a sink query if its attention to position 0 is above this")


def run(args) -> int:
    import time

    from analyses.cli.launch import start_run  # --nproc: rank 0 owns the run
    from analyses.qk.explorer import explorer_tables
    from data.notation import head_label
    from data.store import RunStore
    from data.tasks import default_tasks
    from probes.head_scores import HeadScoreConfig
    from probes.models import load_model

    args.task = "induction"
    check_task_sample(args, "head scores need a causal decoder")
    check_int("--top-k", args.top_k, 0, 20)
    check_int("--qk-top", args.qk_top, 0, 50)
    check_float("--sink-epsilon", args.sink_epsilon, 0.0, 0.999)
    tasks = default_tasks(args.model)
    t0 = time.perf_counter()
    loaded = load_model(args.model, device=args.device)
    config = HeadScoreConfig(sink_epsilon=args.sink_epsilon, top_k=args.top_k)
    tables = explorer_tables(loaded, args.model, args.n, args.seed, args.qk_top, config)
    store = RunStore(args.runs_dir)
    manifest = {"tasks": tasks, "n": args.n, "seed": args.seed, "top_k": args.top_k,
                "qk_top": args.qk_top, "sink_epsilon": args.sink_epsilon}
    with start_run(store, command="heads", model=args.model, config=manifest) as run_:
        for name, df in tables.items():
            run_.write_table(name, df)
    print(f"run {run_.run_id}: {len(tasks)} tasks x {args.n} prompts on {args.model} in "
          f"{time.perf_counter() - t0:.1f} s -> {store.root / run_.run_id}")
    scores = tables["head_scores"]
    wide = scores.pivot_table(index=["layer", "head"], columns="stat", values="value")
    for stat in ("prev_token", "induction", "duplicate", "sink_score", "output_norm"):
        top = wide[stat].nlargest(3)
        print(f"  top {stat}: " + ", ".join(f"{head_label(la, h)} {v:.3f}"
                                            for (la, h), v in top.items()))
    for row in tables.get("qk_summary", scores.iloc[:0]).itertuples():
        print(f"  QK {head_label(row.layer, row.head)}: {int(row.n_pairs)} induction pairs, "
              f"max |sum of terms - score| {row.max_abs_error:.1e}")
    return 0
