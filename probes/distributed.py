"""Data-parallel helpers on torch.distributed: who am I, which prompts are mine, gather, merge.

attnlab's heavy jobs (probes, ``hook_z`` capture, patching sweeps, SAE training) are
data-parallel. torch already ships the engine -- ``torchrun`` (``torch.distributed.run``,
single- or multi-node, elastic rendezvous) and ``torch.distributed`` collectives (gloo on CPU,
NCCL on GPU) -- so this module only adds what attnlab needs on top of it:

- :func:`rank_info` (rank, world size, local rank; one process when no group is set up),
  :func:`launched_by_torchrun` and :func:`process_group` (init + teardown + SIGTERM -> an
  exception, so that a run whose peer died is closed as ``failed``);
- :func:`shard_range`: the contiguous block of items a rank owns (contiguous, so that rank
  order is item order and concatenating the ranks' outputs gives the one-process order);
- :func:`all_gather` / :func:`broadcast`: Python objects over the group (tensors moved to CPU);
- :func:`merge_accumulators`: merge the probes' accumulators across ranks, exactly
  (counts, sums, min/max, Chan et al.'s parallel mean/M2) or, for quantile reservoirs,
  by bottom-k merging (:meth:`probes.accumulators.Reservoir.merge`);
- :func:`launch`: run a function on N local processes under torch's elastic launcher (tests,
  benchmarks and notebooks; the CLI re-executes itself with ``torchrun`` instead).

    with process_group() as info:           # under `torchrun --nproc-per-node 2 ...`
        mine = prompts[shard_range(len(prompts)).as_slice()]
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from probes.rank_env import TORCHRUN_VARS, launched_by_torchrun  # noqa: F401  (re-exported)

DEFAULT_TIMEOUT_S = 600.0  # a collective that waits longer than this fails the job


class RankTerminated(KeyboardInterrupt):
    """The launcher stopped this rank (SIGTERM): another rank failed, or the job was cancelled.

    A KeyboardInterrupt, so that it ends the command like Ctrl-C does and the open run is
    marked ``failed`` by :meth:`data.store.RunStore.start_run`.
    """


class RankInfo(NamedTuple):
    """Where this process sits in the job."""

    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # processes in the job (all nodes)
    local_rank: int  # rank on this node (picks the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class Shard(NamedTuple):
    """The contiguous items [start, stop) of ``n`` that one rank owns."""

    start: int
    stop: int

    def as_slice(self) -> slice:
        return slice(self.start, self.stop)

    def __len__(self) -> int:
        return self.stop - self.start


def rank_info() -> RankInfo:
    """This process's rank; ``RankInfo(0, 1, 0)`` when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return RankInfo(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    return RankInfo(0, 1, 0)


def rank_device(device: str | None) -> str | None:
    """The device this rank uses: a bare ``cuda`` becomes ``cuda:<local rank>``."""
    if device is None and torch.cuda.is_available():
        device = "cuda"
    if device == "cuda" and launched_by_torchrun():
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def backend_for(device: str | None) -> str:
    """NCCL for CUDA devices, gloo otherwise (CPU)."""
    return "nccl" if device is not None and str(device).startswith("cuda") else "gloo"


def _raise_terminated(signum, frame) -> None:
    raise RankTerminated(f"rank stopped by signal {signum} (another rank failed, or the job "
                         "was cancelled)")


@contextlib.contextmanager
def process_group(device: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[RankInfo]:
    """Join the job torchrun started (env ``RANK``, ``WORLD_SIZE``, ...) for the ``with`` body.

    Outside torchrun (or when a group already exists) it yields the current :func:`rank_info`
    and does nothing. Inside, it initialises the default group (NCCL for a CUDA ``device``,
    gloo otherwise), turns SIGTERM (what torch's elastic agent sends to the surviving ranks
    when one dies) into :class:`RankTerminated`, and destroys the group on exit.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield rank_info()
        return
    device = rank_device(device)
    if device is not None and str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend_for(device), timeout=_dt.timedelta(seconds=timeout_s))
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield rank_info()
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):  # a dead peer may make teardown fail too
            dist.destroy_process_group()


def shard_range(n: int, info: RankInfo | None = None) -> Shard:
    """The contiguous block of ``n`` items that this rank owns (sizes differ by at most 1).

    Rank r owns [r n / W, (r + 1) n / W): rank order is item order. Raises ValueError when a
    rank would get nothing (fewer items than processes).
    """
    info = info or rank_info()
    if n < info.world_size:
        raise ValueError(f"{n} item(s) cannot be split over {info.world_size} processes: use "
                         f"fewer processes (--nproc) or more items")
    return Shard(info.rank * n // info.world_size, (info.rank + 1) * n // info.world_size)


def _to_cpu(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (one process: ``[obj]``); tensors come back on CPU."""
    info = rank_info()
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, _to_cpu(obj))
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (one process: ``obj``)."""
    if not rank_info().distributed:
        return obj
    box = [_to_cpu(obj)]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def sum_over_ranks(values: Sequence[float]) -> list[float]:
    """Element-wise sums of every rank's ``values`` (totals and counts; one process: as is)."""
    parts = all_gather(list(values))
    return [sum(p[i] for p in parts) for i in range(len(values))]


def shard_tokens(tokens):
    """This rank's contiguous block of the rows of a :class:`probes.tokens.Tokens` (all of
    them in one process)."""
    from probes.tokens import Tokens

    info = rank_info()
    if not info.distributed:
        return tokens
    sl = shard_range(tokens.ids.shape[0], info).as_slice()
    return Tokens(tokens.ids[sl], tokens.attention_mask[sl], tokens.lengths[sl],
                  tokens.str_tokens[sl])


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if rank_info().distributed:
        dist.barrier()


# ------------------------------------------------------------------- merging accumulators

#: accumulator class name -> {attribute: how it merges}. Kinds: "moments" (a RunningMoments),
#: "moments_dict" (dict of them), "reservoir", "sum" (a number or tensor), "sum_dict" (dict of
#: numbers/tensors, keys may be missing on a rank) and "concat" (a list, rank order).
#: Attributes not listed are settings (layer, config, weights) that every rank has equal.
MERGE_FIELDS: dict[str, dict[str, str]] = {
    "EntropyAccumulator": {"m": "moments_dict", "res": "reservoir", "violations": "sum",
                           "w_violations": "sum"},
    "MassiveAccumulator": {"_rows": "concat", "_summ": "concat", "_seen": "sum"},
    "HeadNormAccumulator": {"moments": "moments"},
    "LayerNormAccumulator": {"moments": "moments"},
    "SinkAccumulator": {"_sums": "sum_dict", "_counts": "sum_dict"},
    "CosineAccumulator": {"_sum": "sum", "_count": "sum"},  # analyses.redundancy.scores
    "RunningMoments": {},  # merged as a whole (kind "moments")
}


def _pack(kind: str, value: Any) -> Any:
    """A picklable copy of one mergeable attribute (no generators, lambdas or modules)."""
    if kind == "moments":
        return value.state()
    if kind == "moments_dict":
        return {k: v.state() for k, v in value.items()}
    if kind == "reservoir":
        return value.state()
    return value


def _merge(kind: str, mine: Any, theirs: Any) -> Any:
    """``mine`` (live attribute) with ``theirs`` (packed) merged in; returns the new value."""
    if kind == "moments":
        mine.merge_state(theirs)
        return mine
    if kind == "moments_dict":
        for k, state in theirs.items():
            mine[k].merge_state(state)
        return mine
    if kind == "reservoir":
        mine.merge_state(theirs)
        return mine
    if kind == "sum":
        return mine + theirs
    if kind == "sum_dict":
        out = dict(mine)
        for k, v in theirs.items():
            out[k] = out[k] + (v.to(out[k].device) if torch.is_tensor(v) else v) if k in out else v
        return out
    if kind == "concat":
        return list(mine) + list(theirs)
    raise ValueError(f"unknown merge kind {kind!r}")


def _fields(acc: Any) -> dict[str, str]:
    name = type(acc).__name__
    if name not in MERGE_FIELDS:
        raise TypeError(f"{name} cannot be merged across ranks: add its mergeable attributes to "
                        "probes.distributed.MERGE_FIELDS")
    return MERGE_FIELDS[name] or {"": "moments"}


def accumulator_state(acc: Any) -> dict[str, Any]:
    """The mergeable part of one accumulator, picklable (what :func:`all_gather` ships)."""
    return {f: _pack(kind, acc if f == "" else getattr(acc, f)) for f, kind in
            _fields(acc).items()}


def merge_accumulators(accs: Sequence[Any]) -> None:
    """Merge ``accs`` in place across all ranks: afterwards every rank holds the statistics of
    every rank's data, as if one process had seen it all (rank order for concatenations).

    Counts, sums, min/max are exact; means and M2 use Chan et al.'s parallel formula
    (float64); quantile reservoirs merge by bottom-k (exact while the total fits in k).
    """
    info = rank_info()
    if not info.distributed:
        return
    gathered = all_gather([accumulator_state(a) for a in accs])  # (rank,) of (acc,) states
    for i, acc in enumerate(accs):
        own = gathered[info.rank][i]
        for f, kind in _fields(acc).items():
            target = acc if f == "" else getattr(acc, f)
            # rebuild from rank 0 on, so that every rank ends with the same rank-ordered value
            value = _reset(kind, target, own[f])
            for r in range(info.world_size):
                value = _merge(kind, value, gathered[r][i][f])
            if f:
                setattr(acc, f, value)


def _reset(kind: str, target: Any, own: Any) -> Any:
    """An empty value of ``kind`` (keeping the live object where one is updated in place)."""
    if kind == "moments":
        target.clear()
        return target
    if kind == "moments_dict":
        for m in target.values():
            m.clear()
        return target
    if kind == "reservoir":
        target.clear()
        return target
    if kind == "sum":
        return own - own
    if kind == "sum_dict":
        return {}
    return []


# ------------------------------------------------------------------------------ launching


def launch(fn: Callable[..., Any], nproc: int, *args: Any,
           monitor_interval: float = 0.1) -> dict[int, Any]:
    """Run ``fn(*args)`` on ``nproc`` local processes under torch's elastic launcher.

    The same engine as ``torchrun --standalone --nproc-per-node N`` (c10d rendezvous on a free
    local port, no restarts); ``fn`` must be importable (a module-level function) and should
    enter :func:`process_group`. Returns ``{rank: return value}``; a failed rank raises
    torch's ``ChildFailedError`` after the others were stopped.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                          run_id=f"attnlab-{uuid.uuid4().hex[:8]}", rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=monitor_interval)
    return elastic_launch(config, fn)(*args)
