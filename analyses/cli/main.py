"""The ``attnlab`` command line.

Each subcommand lives in its own module listed in ``COMMAND_MODULES``; the module defines
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` does the work.
Common options (``--runs-dir``, ``--device``, ``-v``) are added here once.

    attnlab --help
    attnlab models
    attnlab demo
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "analyses.cli.commands.patch_cmd",
    "analyses.cli.commands.report_cmd",
    "analyses.cli.commands.models_cmd",
    "analyses.cli.commands.runs_cmd",
    "analyses.cli.commands.redundancy_cmd",
    "analyses.cli.commands.demo_cmd",
    "analyses.cli.commands.dashboard_cmd",
    "analyses.cli.commands.sae_cmd",
    "analyses.cli.commands.organism_cmd",
    "analyses.cli.commands.probe_cmd",
]

DESCRIPTION = """\
attnlab: a workbench for the attention layers of transformers.

Models: 'minilm' (real all-MiniLM-L6-v2, offline), 'organism' (a small causal LM trained by
this project with known circuits), or any TransformerLens model name (needs the hub or a cache).
Every analysis writes a run (manifest + Parquet tables) under --runs-dir (default ./runs or
$ATTNLAB_RUNS); `attnlab dashboard` shows them.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnlab", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--runs-dir", default=None,
        help="folder of runs (default: $ATTNLAB_RUNS, else ./runs)",
    )
    common.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from data.store import StoreError
    from probes.models import ModelNotAvailable

    try:
        return int(args.func(args) or 0)
    except (ModelNotAvailable, StoreError, ValueError, FileNotFoundError) as exc:
        # Errors the user can act on: one line, no traceback (-v shows it).
        if args.verbose:
            raise
        print(f"attnlab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnlab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
