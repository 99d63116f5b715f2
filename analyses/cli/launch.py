"""``--nproc N``: run a command on N processes with torch's own launcher (torchrun).

``attnlab probe --nproc 2 ...`` re-executes itself as ``torchrun --standalone
--nproc-per-node 2 -m analyses.cli probe ...`` (:func:`torch.distributed.run.main`, torch's
elastic launcher: c10d rendezvous on a free local port, no restarts). A command started by
``torchrun`` directly -- e.g. on two nodes::

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 -m analyses.cli probe --model smollm2 ...

-- sees torchrun's environment and joins the job instead (``--nproc`` is then ignored). Each
rank runs the command inside :func:`probes.distributed.process_group` (gloo on CPU, NCCL on
CUDA, ``cuda`` meaning ``cuda:<local rank>``); the library code shards the work and gathers
it (probes, capture, patching, SAE training).

The run store: rank 0 owns the run (:func:`start_run`: it creates the run, writes its tables
and closes it ``complete`` or ``failed``); the other ranks get a :class:`RankRun` that writes
nothing, and print nothing on stdout. When one rank dies, torch's agent stops the others
(SIGTERM -> :class:`probes.distributed.RankTerminated`), so rank 0 marks the run ``failed``;
tables are written atomically after the work, so nothing is half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# probes.distributed imports torch: it is imported inside the functions that need it, so that
# `attnlab --help` and the listing commands stay free of the torch import.

#: the commands that split their work over processes (the others run in one)
NPROC_COMMANDS = ("probe", "patch", "sae train", "report", "redundancy", "heads",
                  "sae eval", "massive ablate", "massive sinks", "circuit discover",
                  "circuit evaluate")


def add_nproc(common: argparse.ArgumentParser) -> None:
    """The ``--nproc`` common option."""
    common.add_argument(
        "--nproc", type=int, default=1,
        help="processes to run on (torchrun on this machine; gloo on CPU, NCCL per GPU); "
             f"{', '.join(NPROC_COMMANDS)}. Under torchrun (multi-node) it is ignored: "
             "torchrun's own options decide",
    )


def relaunch(argv: list[str], nproc: int) -> int:
    """Run ``attnlab ARGV`` on ``nproc`` local processes under torchrun; its exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as torchrun

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    # torchrun's own parser would read the command's options too (``--n`` is ambiguous with
    # its ``--nnodes``): parse only the launcher's options and hand the command's on as is.
    config = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                         "--module", "analyses.cli"])
    config.training_script_args = _without_nproc(argv)
    try:
        torchrun(config)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values() if f.exitcode and f.exitcode > 0]
        return codes[0] if codes else 1
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N`` (the ranks must not relaunch)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Run the parsed command: relaunched on ``--nproc`` processes, as one rank of a torchrun
    job, or plainly in this process."""
    nproc = getattr(args, "nproc", 1) or 1
    name = " ".join([args.command] + [getattr(args, a) for a in ("sae_command",
                                                                 "organism_command",
                                                                 "massive_command",
                                                                 "circuit_command")
                                      if getattr(args, a, None)])
    several = nproc > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several and name not in NPROC_COMMANDS:
        raise ValueError(f"`{name}` runs in one process; --nproc / torchrun is for "
                         f"{', '.join(NPROC_COMMANDS)}")
    from probes.rank_env import launched_by_torchrun

    if launched_by_torchrun():
        from probes.distributed import process_group, rank_device

        args.device = rank_device(getattr(args, "device", None))
        with process_group(args.device) as info, _quiet_unless(info.is_main):
            return int(args.func(args) or 0)
    if nproc > 1:
        return relaunch(list(sys.argv[1:] if argv is None else argv), nproc)
    return int(args.func(args) or 0)


@contextlib.contextmanager
def _quiet_unless(main: bool) -> Iterator[None]:
    """Ranks other than 0 print nothing on stdout (their errors still go to stderr)."""
    if main:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


class RankRun:
    """What a rank other than 0 holds instead of the run: the same run id and folder (for its
    own shard files), but the tables and the manifest belong to rank 0."""

    def __init__(self, root: Path, run_id: str):
        self.run_id, self.path = run_id, root / run_id

    def write_table(self, name: str, df: Any) -> None:
        """Rank 0 writes the (gathered) tables; here it is a no-op."""

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        return {}


@contextlib.contextmanager
def start_run(store, **kwargs: Any) -> Iterator[Any]:
    """:meth:`data.store.RunStore.start_run` on rank 0, :class:`RankRun` elsewhere.

    Every rank must enter it (the run id is broadcast from rank 0). In one process it is
    exactly ``store.start_run(**kwargs)``.
    """
    from probes.distributed import broadcast, rank_info

    info = rank_info()
    if not info.distributed:
        with store.start_run(**kwargs) as run_:
            yield run_
        return
    if info.is_main:
        with store.start_run(**kwargs) as run_:
            broadcast(run_.run_id)
            yield run_
        return
    yield RankRun(Path(store.root), broadcast(None))
