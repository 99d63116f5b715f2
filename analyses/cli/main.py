"""The ``attnlab`` command line, and its one error boundary.

Each subcommand lives in its own module listed in ``COMMAND_MODULES``; the module defines
``register(subparsers)``, which adds a parser whose ``func(args) -> int`` does the work.
Common options (``--runs-dir``, ``--device``, ``--threads``, ``-v``, ``--debug``) are added
here once, and checked (and ``--threads`` applied) here before any command runs.

Errors (:func:`main`): every command checks its arguments before any model work
(:mod:`analyses.cli.checks`). What the user can act on (a bad argument, a missing or corrupt
file, a folder that cannot be written, a device this machine lacks, a model that cannot load)
is one line on stderr, ``attnlab COMMAND: error: ...`` naming the file or flag and what to
do, exit code 2; argparse's own errors are one line too. Anything else is a bug: one line
saying so, exit code 1. ``--debug`` shows the traceback instead; ``-v`` only logs more. A
reader that goes away (``attnlab runs | head -1``) ends the command quietly, exit code 141
(128 + SIGPIPE, as a shell reports a command killed by it).

    attnlab --help
    attnlab models
    attnlab demo
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from analyses.cli import launch
from analyses.cli.launch import add_nproc
from analyses.cli.options import OneLineParser

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
    "analyses.cli.commands.circuit_cmd",
    "analyses.cli.commands.qk_cmd",
    "analyses.cli.commands.heads_cmd",
    "analyses.cli.commands.massive_cmd",
]

DESCRIPTION = """\
attnlab: a workbench for the attention layers of transformers.

Models: 'minilm' (real all-MiniLM-L6-v2, offline), 'organism' (a small causal LM trained by
this project with known circuits), or any TransformerLens model name (needs the hub or a cache).
Every analysis writes a run (manifest + Parquet tables) under --runs-dir (default ./runs or
$ATTNLAB_RUNS); `attnlab dashboard` shows them.
"""


#: the largest default of --threads: attnlab's models are small, and more threads than this
#: mostly add synchronisation
MAX_DEFAULT_THREADS = 4
EXIT_USER_ERROR = 2  # the user can act on it (the message says how); argparse's code too
EXIT_BUG = 1  # an unexpected exception: a bug in attnlab
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
#: errno -> what to do, for OSErrors that name a file.
OS_HINTS = {
    errno.EACCES: "check its permissions, or pass a folder you can write (--runs-dir, --out)",
    errno.EPERM: "check its permissions, or pass a folder you can write (--runs-dir, --out)",
    errno.EROFS: "the disk is read-only: pass a folder on a writable disk",
    errno.ENOSPC: "the disk is full: free space or pass a folder on another disk",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EISDIR: "that is a folder; give a file",
    errno.ENOENT: "check the path",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="attnlab", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument("--debug", action="store_true",
                        help="log at DEBUG level and show the full traceback of an error")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--runs-dir", default=None,
        help="folder of runs (default: $ATTNLAB_RUNS, else ./runs)",
    )
    common.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    add_nproc(common)  # --nproc N: torchrun on N processes (analyses.cli.launch)
    common.add_argument(
        "--threads", type=int, default=None,
        help=f"torch CPU threads (default: $ATTNLAB_THREADS, else half the CPU cores, at most "
        f"{MAX_DEFAULT_THREADS}: {default_threads()} here; attnlab's models are small, and on a "
        "shared 2-core machine 1 thread measured 3-7x faster than torch's default of all cores)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def default_threads() -> int:
    """``--threads`` when not typed: $ATTNLAB_THREADS, else half the cores (at most
    :data:`MAX_DEFAULT_THREADS`, at least 1)."""
    env = os.environ.get("ATTNLAB_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(MAX_DEFAULT_THREADS, (os.cpu_count() or 1) // 2))


def set_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads once, before the command runs. Torch not yet imported (a
    listing command never imports it): through $OMP_NUM_THREADS, which torch reads when it
    loads, so that ``attnlab models`` stays free of the torch import."""
    from analyses.cli.checks import check_int

    n = check_int("--threads", getattr(args, "threads", None), 1)
    if n is None:
        n = args.threads = default_threads()
    os.environ["OMP_NUM_THREADS"] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def command_name(args: argparse.Namespace) -> str:
    """``patch``, ``sae train``, ``organism train``: how the error line names the command."""
    parts = [args.command] + [getattr(args, a) for a in ("sae_command", "organism_command",
                                                      "massive_command", "circuit_command")
                              if getattr(args, a, None)]
    return " ".join(parts)


def check_common(args: argparse.Namespace) -> None:
    """The options every command shares: ``--device`` exists here, ``--runs-dir`` is a folder
    (writable for a command that writes runs). Before the command, so before any model."""
    from analyses.cli.checks import check_device
    from data.store import RunStore

    check_device(getattr(args, "device", None))
    if hasattr(args, "runs_dir"):
        RunStore(args.runs_dir).check_root(write=getattr(args, "writes_runs", False))


def _expected() -> tuple[type[BaseException], ...]:
    """The exceptions the user can act on (see the module docstring)."""
    import torch

    from data.store import StoreError
    from probes.models import ModelNotAvailable

    return (ValueError, OSError, StoreError, ModelNotAvailable, torch.cuda.OutOfMemoryError)


def error_line(exc: BaseException) -> str:
    """One line for ``exc``: a file error names the file and what to do."""
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        text = ("out of memory on the device: lower the sizes (--n, --batch-size, --tokens) "
                "or use --device cpu")
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
        if exc.filename2 is not None:
            text += f" -> {exc.filename2}"
        if exc.errno in OS_HINTS:
            text += f" ({OS_HINTS[exc.errno]})"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    name = command_name(args)
    try:
        check_common(args)
        set_threads(args)
        code = launch.run(args, argv)  # plain, relaunched under torchrun, or one rank of it
        sys.stdout.flush()  # a closed pipe fails here, inside the boundary
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"attnlab {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, _expected()):
            print(f"attnlab {name}: error: {error_line(exc)}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"attnlab {name}: internal error: {type(exc).__name__}: {error_line(exc)} "
              "(a bug in attnlab: rerun with --debug for the traceback and report it)",
              file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
