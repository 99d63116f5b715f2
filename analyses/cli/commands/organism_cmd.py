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


def run(args) -> int:
    from data.organism.train import run as train_run
    from probes.dynamics import checkpoint_statistics

    return train_run(args, on_checkpoint=[checkpoint_statistics])
