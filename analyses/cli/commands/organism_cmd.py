"""`attnlab organism train`: train (or resume) the project's model organism.

Thin wrapper over ``data.organism.train.run`` that wires the probes' checkpoint statistics
(``probes.dynamics``: attention entropy, massive activations) into the trainer's dynamics table.
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
