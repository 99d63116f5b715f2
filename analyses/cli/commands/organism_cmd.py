"""`attnlab organism train | eval`: train (or resume) the project's model organism; score it.

``train`` is a thin wrapper over ``data.organism.train.run`` that wires the probes' checkpoint
statistics (``probes.dynamics``: attention entropy, massive activations) into the trainer's
dynamics table. ``eval`` scores a checkpoint on fresh item seeds beside the shortcut baselines
and the reasoning task's hop probes (``data.organism.fresh``) and writes table
``organism_eval``.
"""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser("organism", help="the project-trained causal LM (train it)",
                       description="The organism: a small causal LM with known mechanisms.")
    osub = p.add_subparsers(dest="organism_command", metavar="ACTION")
    osub.required = True
    t = osub.add_parser("train", help="train or resume the organism (CPU is fine)",
                        description="Train the organism on its generated corpus; --ship writes "
                        "the final checkpoint into data/organism/ (what load_model loads).")
    from data.organism.options import add_arguments

    add_arguments(t)
    t.set_defaults(func=run)
    from analyses.cli.options import add_command

    e = add_command(osub, common, "eval", run_eval,
                    "accuracy on fresh item seeds, beside shortcut baselines",
                    "Score the organism on fresh held-out items of every task family (seeds "
                    "training never used), with the shortcut baselines and the reasoning hop "
                    "probes; writes table organism_eval to a run.")
    e.add_argument("--seeds", default="7001,7002,7003",
                   help="comma-separated item seeds (default 7001,7002,7003: never used in "
                   "training, tests or tuning)")
    e.add_argument("--n", type=int, default=500, help="items per family and seed (default 500)")
    e.add_argument("--path", default=None,
                   help="folder of organism artefacts (default: the shipped data/organism/)")


def check_train(args) -> None:
    """Every argument, before training starts (the trainer itself checks only its configs)."""
    from analyses.cli.checks import UsageError, check_folder, check_int
    from data.organism.checkpoint import LAST_META, LAST_WEIGHTS
    from data.organism.config import PRESETS

    if args.config not in PRESETS:
        raise UsageError(f"--config {args.config!r} is not a preset: choose from "
                         f"{', '.join(sorted(PRESETS))}")
    check_int("--steps", args.steps, 1)
    check_int("--seed", args.seed, 0)
    check_int("--threads", args.threads, 1)
    out = check_folder("--out", args.out)
    if args.resume and not all((out / f).is_file() for f in (LAST_WEIGHTS, LAST_META)):
        raise UsageError(f"--resume: no resumable checkpoint in --out {args.out} (it needs "
                         f"{LAST_WEIGHTS} and {LAST_META}); run without --resume to start fresh")


def run(args) -> int:
    from data.organism.train import run as train_run
    from probes.dynamics import checkpoint_statistics

    check_train(args)
    return train_run(args, on_checkpoint=[checkpoint_statistics])


def run_eval(args) -> int:
    from analyses.cli.checks import check_int, parse_ints
    from data.organism.fresh import fresh_evaluation, summary
    from data.organism.load import load_organism, read_config
    from data.organism.world import make_world
    from data.store import RunStore

    check_int("--n", args.n, 1, 100_000)
    seeds = list(parse_ints("--seeds", args.seeds))
    model = load_organism(path=args.path)
    world_spec = read_config(args.path)["world"]
    world = make_world(world_spec["seed"], world_spec["n_people"])
    config = {"seeds": seeds, "n": args.n, "path": args.path or "shipped"}
    with RunStore(args.runs_dir).start_run("organism-eval", "organism", config) as run_:
        table = fresh_evaluation(model, world, seeds, args.n)
        run_.write_table("organism_eval", table)
    print(summary(table).round(3).to_string(index=False))
    print(f"run {run_.run_id}: table 'organism_eval' ({run_.path})")
    return 0
