"""Command-line options of the organism trainer (import-light: no torch, for the CLI)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``attnlab organism train`` (read by ``data.organism.train.run``)."""
    p.add_argument("--config", default="default",
                   help="preset: default (the shipped organism) | v1 (the first organism, before "
                   "issue 20) | tiny (tests)")
    p.add_argument("--steps", type=int, default=None, help="total steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the preset's)")
    p.add_argument("--out", default="runs/organism-train", help="output folder (git-ignored)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    p.add_argument("--ship", action="store_true",
                   help="also write the final artefacts into data/organism/ (the shipped model)")
    p.add_argument("--threads", type=int, default=2,
                   help="torch CPU threads (results are reproducible for a fixed thread count; "
                   "use 1 on a machine busy with other work)")
