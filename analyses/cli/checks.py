"""Checks of ``attnlab`` arguments, run before any model work.

Why: a bad argument found after the model loaded (or after the work) costs the user that time
and leaves a failed run behind; one silently dropped (a flag another flag overrides) makes the
manifest record what did not run. So every command checks all its arguments first, with these
helpers: ranges, repeats, and combinations (a conflict is an error naming both flags). Checks
that need the model's sizes (a head index, ``--k`` against the number of heads) run right after
it loads, before any heavy work (:func:`check_heads`, :func:`check_layers`, ...).

A bad argument is a :class:`UsageError` (a ``ValueError``), which the CLI's error boundary
(:mod:`analyses.cli.main`) prints as one line with exit code 2.

    check_int("--n", args.n, 1, MAX_ITEMS)
    raise conflict("--receivers", "--component z", "receivers are for --component path")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

#: Upper bounds of sizes. Generous (beyond them a run would not fit the memory or the time of
#: any machine attnlab targets); they exist so that a typo fails at once, not after minutes.
MAX_ITEMS = 10_000  # task items / prompt pairs per task
MAX_TOKENS = 10_000_000  # tokens scanned, collected into a buffer, or evaluated
MAX_D_SAE = 2**20  # SAE dictionary size
#: attnlab's encoder models (bidirectional, patched on --clean/--corrupted sentences); every
#: other model it loads (organism, smollm2, TransformerLens hub models) is a causal decoder.
ENCODERS = ("minilm",)


class UsageError(ValueError):
    """A bad argument or combination of arguments; the message names the flag(s)."""


def _bounds(lo: float | None, hi: float | None) -> str:
    if hi is None:
        return f">= {lo}"
    if lo is None:
        return f"<= {hi}"
    return f"in {lo}..{hi}"


def check_int(flag: str, value: int | None, lo: int | None = None,
              hi: int | None = None) -> int | None:
    """``value`` if it lies in [lo, hi] (None passes: not given), else a UsageError."""
    if value is not None and ((lo is not None and value < lo) or
                              (hi is not None and value > hi)):
        raise UsageError(f"{flag} must be {_bounds(lo, hi)}, got {value}")
    return value


def check_float(flag: str, value: float | None, lo: float | None = None,
                hi: float | None = None, open_lo: bool = False) -> float | None:
    """``value`` if finite and in [lo, hi] ((lo, hi] with ``open_lo``); None passes."""
    if value is None:
        return value
    low_ok = lo is None or (value > lo if open_lo else value >= lo)
    if not math.isfinite(value) or not low_ok or (hi is not None and value > hi):
        want = f"> {lo}" if open_lo and hi is None else _bounds(lo, hi)
        raise UsageError(f"{flag} must be a finite number {want}, got {value}")
    return value


def conflict(flag: str, other: str, why: str) -> UsageError:
    """The error of two flags that cannot go together (``why``: what to do instead)."""
    return UsageError(f"{flag} cannot be combined with {other}: {why}")


def given(args: Any, *names: str) -> list[str]:
    """The flags among ``names`` (argparse dests) that were typed (their default is None)."""
    return [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) not in
            (None, False)]


def parse_ints(flag: str, text: str, lo: int = 0, hi: int | None = None) -> tuple[int, ...]:
    """Comma-separated integers in [lo, hi]; empty items and repeats are errors."""
    items = [s.strip() for s in text.split(",")]
    if not text.strip() or any(not s for s in items):
        raise UsageError(f"{flag} {text!r}: give comma-separated integers, e.g. 0,2")
    try:
        values = tuple(int(s) for s in items)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give comma-separated integers, e.g. 0,2") from None
    for v in values:
        check_int(flag, v, lo, hi)
    check_unique(flag, values)
    return values


def check_unique(flag: str, items) -> None:
    """A value listed twice is an error (it would be run, or counted, once)."""
    seen: set = set()
    for item in items:
        if item in seen:
            raise UsageError(f"{flag}: {item} is listed twice")
        seen.add(item)


def check_device(text: str | None) -> None:
    """``--device``: a torch device this machine has (cpu, cuda, cuda:N, mps)."""
    if text is None:
        return
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {text!r} is not a device attnlab runs on: use cpu, cuda, "
                         "cuda:N or mps (default: cuda if available, else cpu)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine (torch "
                             f"{torch.__version__}, no usable GPU); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s), numbered from 0")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {text}: MPS is not available on this machine; use cpu")


def check_task(flag: str, name: str | None) -> str | None:
    """A :mod:`data.tasks` task name (None passes)."""
    from data.tasks import TASKS

    if name is not None and name not in TASKS:
        raise UsageError(f"{flag} {name!r} is not a task: choose from {', '.join(TASKS)}")
    return name


def check_folder(flag: str, path: str | None, must_exist: bool = False) -> Path | None:
    """A folder argument: never an existing file; with ``must_exist``, an existing folder."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not str(path).strip():
        raise UsageError(f"{flag} is empty: give a folder")
    if p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {path} is a file, not a folder")
    if must_exist and not p.is_dir():
        raise UsageError(f"{flag} {path}: no such folder")
    return p


def model_kind(name: str) -> str:
    """"encoder" or "decoder": what ``load_model(name)`` will return, known before it loads."""
    return "encoder" if name in ENCODERS else "decoder"


def check_task_sample(args, needs: str, min_n: int = 1) -> None:
    """``--model`` is a decoder (``needs``: what for) and ``--task``, ``--n``, ``--seed``
    (options.add_task / add_sample) are in range."""
    if model_kind(args.model) != "decoder":
        raise UsageError(f"--model {args.model} is an encoder: {needs}")
    check_task("--task", args.task)
    check_int("--n", args.n, min_n, MAX_ITEMS)
    check_int("--seed", args.seed, 0)


# ----------------------------------------------------------------------------- model sizes


def check_layers(flag: str, layers, n_layers: int) -> None:
    """Every layer index exists in a model of ``n_layers`` layers."""
    bad = [la for la in layers if not 0 <= la < n_layers]
    if bad:
        raise UsageError(f"{flag}: layer(s) {bad} do not exist; the model has {n_layers} "
                         f"layers (0..{n_layers - 1})")


def check_heads(flag: str, heads, cfg) -> None:
    """Every (layer, head) exists in the model of config ``cfg``."""
    from data.notation import head_label

    bad = [head_label(la, h) for la, h in heads
           if not (0 <= la < cfg.n_layers and 0 <= h < cfg.n_heads)]
    if bad:
        raise UsageError(f"{flag}: {', '.join(bad)} not in this model ({cfg.n_layers} layers "
                         f"x {cfg.n_heads} heads, L0H0..L{cfg.n_layers - 1}H{cfg.n_heads - 1})")


def check_head_count(flag: str, k: int, cfg) -> None:
    """A number of heads to pick (``--k``, ``--top-k``) no larger than the model has."""
    total = int(cfg.n_layers) * int(cfg.n_heads)
    if k > total:
        raise UsageError(f"{flag} {k} is more than the model's {total} heads "
                         f"({cfg.n_layers} layers x {cfg.n_heads})")
