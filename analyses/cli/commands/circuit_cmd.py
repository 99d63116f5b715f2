"""`attnlab circuit discover` and `attnlab circuit evaluate`: edge circuits and their faithfulness.

    attnlab circuit discover --model organism --task induction-keys --method eap-ig
    attnlab circuit discover --model smollm2 --task ioi --method eap --n 16
    attnlab circuit evaluate --run circuit-discover-20250101-120000-abcd --ablation mean

``discover`` scores every edge of the model's graph (embeddings, heads with q/k/v inputs,
MLPs, logits; :mod:`analyses.causal.edges`) and writes an ``edges`` table. ``evaluate`` reads
that run, keeps the top edges at MIB's budgets (0.1% .. 50% of edges, and all), ablates every
other edge (``--ablation corrupted``, the default: the corrupted run's activations;
``--ablation mean``: the source's output averaged over the clean prompts at that position),
and writes the ``faithfulness`` curve and ``circuit_faithfulness`` (CPR, CMD) to a new run. On
an induction task it also evaluates the known induction circuit, its heads found from
attention patterns (``known_circuit``: :mod:`analyses.causal.edges.known`). It evaluates on
held-out pairs (seed + 1) unless --seed is given. Both take ``--nproc N``: the pairs are
split over N processes and the pair-weighted means gathered (rank 0 writes the run).
"""

from __future__ import annotations

from analyses.cli.checks import MAX_ITEMS, UsageError, check_int
from analyses.cli.options import add_command, add_model

METHODS = ("eap", "eap-ig", "exact-nodes", "exact-edges")
ABLATIONS = ("corrupted", "mean")  # analyses.causal.edges.ablate.ABLATIONS (not imported: light)
HELP = "edge circuits: EAP / EAP-IG discovery, MIB faithfulness (CPR, CMD)"


def register(sub, common) -> None:
    p = sub.add_parser("circuit", help=HELP, description=__doc__.split("\n\n")[2])
    csub = p.add_subparsers(dest="circuit_command", metavar="SUBCOMMAND")
    csub.required = True
    d = add_command(csub, common, "discover", run_discover, "score every edge (edges table)",
                    __doc__)
    add_model(d)
    d.add_argument("--task", default="ioi",
                   help="a data.tasks task of the model, or induction-keys (organism)")
    d.add_argument("--method", default="eap-ig", choices=METHODS,
                   help="eap | eap-ig (inputs variant) | exact-nodes (each node's exact "
                   "effect given to its outgoing edges) | exact-edges (one patched pass per edge)")
    d.add_argument("--steps", type=int, default=5, help="EAP-IG interpolation steps (default 5)")
    d.add_argument("--n", type=int, default=64, help="prompt pairs (default 64)")
    d.add_argument("--seed", type=int, default=0, help="item seed (default 0)")
    d.add_argument("--batch-size", type=int, default=16, help="pairs per pass (default 16)")
    e = add_command(csub, common, "evaluate", run_evaluate, "faithfulness curve, CPR, CMD",
                    __doc__)
    e.add_argument("--run", required=True, help="a `circuit discover` run id")
    e.add_argument("--n", type=int, default=None, help="pairs (default: the discover run's)")
    e.add_argument("--seed", type=int, default=None,
                   help="item seed (default: the discover run's seed + 1, held out)")
    e.add_argument("--batch-size", type=int, default=16, help="pairs per pass (default 16)")
    e.add_argument("--ablation", default="corrupted", choices=ABLATIONS,
                   help="what an edge outside the circuit carries: corrupted (the corrupted "
                   "prompt's activation, default) | mean (the mean over the clean prompts at "
                   "that position); faithfulness is measured against the empty circuit under it")


def _check(args) -> None:
    if getattr(args, "n", None) is not None:
        check_int("--n", args.n, 1, MAX_ITEMS)
    if getattr(args, "seed", None) is not None:
        check_int("--seed", args.seed, 0)
    check_int("--batch-size", args.batch_size, 1)
    if hasattr(args, "steps"):
        check_int("--steps", args.steps, 1)


def _dataset(model_name: str, task: str, n: int, seed: int):
    from analyses.causal.edges.tasks import EDGE_TASKS, load_edge_task
    from analyses.causal.task_sets import check_tasks

    if task not in EDGE_TASKS:
        try:
            check_tasks(model_name, [task])
        except ValueError as exc:
            raise UsageError(f"--task {task!r}: {exc}") from None
    return load_edge_task(model_name, task, n, seed)


def run_discover(args) -> int:
    from analyses.causal.distributed import shard_task
    from analyses.causal.edges.discover import discover
    from analyses.causal.edges.eap import scores_table
    from analyses.causal.edges.sources import task_chunks
    from analyses.cli.launch import start_run
    from data.store import RunStore
    from probes.models import load_model

    _check(args)
    if args.task == "induction-keys" and args.model != "organism":
        raise UsageError("--task induction-keys is built from the organism's induction task")
    loaded = load_model(args.model, device=args.device)
    if loaded.kind != "decoder":
        raise UsageError(f"--model {args.model} is an encoder; edge circuits need a decoder")
    ds = shard_task(_dataset(loaded.name, args.task, args.n, args.seed))  # this rank's pairs
    config = {k: getattr(args, k) for k in ("task", "method", "steps", "n", "seed",
                                            "batch_size")}
    with start_run(RunStore(args.runs_dir), command="circuit-discover", model=loaded.name,
                   config=config) as run_:
        res = discover(loaded.model, task_chunks(ds, args.batch_size), args.method, args.steps)
        table = scores_table(res).assign(task=args.task)
        run_.write_table("edges", table)
        run_.update_manifest(clean_metric=res.clean_metric,
                             corrupted_metric=res.corrupted_metric, n_edges=len(table))
    print(table.head(20).round(4).to_string(index=False))
    print(f"run {run_.run_id}: {len(table)} edges in table 'edges' ({run_.path}); "
          f"logit diff clean {res.clean_metric:.3f}, corrupted {res.corrupted_metric:.3f}")
    return 0


def run_evaluate(args) -> int:
    from analyses.causal.distributed import shard_task
    from analyses.causal.edges.faithfulness import faithfulness_curve
    from analyses.causal.edges.sources import task_chunks
    from analyses.causal.edges.table import scores_matrix
    from analyses.cli.launch import start_run
    from data.store import RunStore
    from probes.models import load_model

    _check(args)
    store = RunStore(args.runs_dir)
    source = store.open_run(args.run)
    if not source.has_table("edges"):
        raise UsageError(f"run {args.run} has no 'edges' table: give a `circuit discover` run")
    manifest = source.manifest
    cfg = manifest["config"]
    n = cfg["n"] if args.n is None else args.n
    seed = cfg["seed"] + 1 if args.seed is None else args.seed
    loaded = load_model(manifest["model"], device=args.device)
    edges = source.read_table("edges")
    graph, scores = scores_matrix(loaded.model, edges)
    full = _dataset(loaded.name, cfg["task"], n, seed)
    ds = shard_task(full)  # this rank's pairs
    config = {"source_run": args.run, "task": cfg["task"], "method": cfg["method"], "n": n,
              "seed": seed, "ablation": args.ablation, "batch_size": args.batch_size}
    with start_run(store, command="circuit-evaluate", model=loaded.name,
                   config=config) as run_:
        curve = faithfulness_curve(loaded.model, graph, scores, task_chunks(ds, args.batch_size),
                                   ablation=args.ablation)
        run_.write_table("faithfulness", curve.table.assign(task=cfg["task"],
                                                            method=cfg["method"]))
        summary = curve.summary.assign(task=cfg["task"], method=cfg["method"])
        run_.write_table("circuit_faithfulness", summary)
        known = _known_circuit(loaded.model, graph, scores, full.clean_tokens, ds, cfg["task"],
                               args.batch_size, args.ablation)
        if known is not None:
            run_.write_table("known_circuit", known)
    print(curve.table.round(4).to_string(index=False))
    print(summary.round(4).to_string(index=False))
    tables = "'faithfulness', 'circuit_faithfulness'"
    if known is not None:
        print("known induction circuit (heads from attention patterns), kept alone:")
        print(known.drop(columns=["clean_metric", "corrupted_metric", "empty_metric"]).round(4)
              .to_string(index=False))
        tables += ", 'known_circuit'"
    print(f"run {run_.run_id}: tables {tables} ({run_.path})")
    return 0


def _known_circuit(model, graph, scores, tokens, ds, task: str, batch_size: int,
                   ablation: str):
    """The ``known_circuit`` table on an induction task, or None (other tasks, or no
    induction circuit in the model: said on stdout).

    ``tokens``: every clean prompt (head scores split them over the ranks themselves, so every
    rank finds the same heads); ``ds``: this rank's pairs."""
    from analyses.causal.edges.known import find_induction_heads, known_circuit_table
    from analyses.causal.edges.sources import task_chunks

    if task not in ("induction", "induction-keys"):
        return None
    try:
        heads = find_induction_heads(model, tokens)
    except ValueError as exc:
        print(f"known circuit not evaluated: {exc}")
        return None
    table = known_circuit_table(model, graph, heads, task_chunks(ds, batch_size), scores,
                                ablation)
    return table.assign(task=task)
