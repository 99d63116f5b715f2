"""Feedback on long work: one progress helper for the CLI and the library alike.

A bar (tqdm: rate and ETA when the number of steps is known) is drawn on stderr only when
stderr is a terminal; in a pipe, a log file or a test it stays silent, so output that is
read by programs holds only results. Library code never prints: it takes an optional
``progress`` flag or callback and draws through :func:`bar` / :func:`phase`, which decide.

Why not tqdm alone: tqdm draws into a pipe as well unless told ``disable=None``, and it has no
"phase" of unknown length that still shows the time spent (a silent 70 s evaluation reads
as a hang). ``ATTNLAB_PROGRESS=0`` turns every bar off, ``=1`` forces them on.

    for batch in bar(batches, total=n, desc="capture"):
        ...
    with phase("evaluating the SAE on 20000 tokens"):
        evaluate(...)
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

ENV = "ATTNLAB_PROGRESS"
#: a phase shorter than this draws nothing (the brief flashes of a bar are noise)
PHASE_DELAY_S = 2.0


def interactive() -> bool:
    """Whether bars are drawn: ``$ATTNLAB_PROGRESS`` (0/1) if set, else stderr is a terminal."""
    forced = os.environ.get(ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "it", enabled: bool | None = None) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one: ``.update(n)``) with rate and ETA,
    drawn only when ``enabled`` (default: :func:`interactive`)."""
    from tqdm.auto import tqdm

    on = interactive() if enabled is None else enabled
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not on, leave=False,
                file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def phase(desc: str, enabled: bool | None = None) -> Iterator[None]:
    """Show ``desc`` and the time spent while the block runs (a step of unknown length, such
    as one library call); the line is cleared when it ends. Silent off a terminal."""
    on = interactive() if enabled is None else enabled
    if not on:
        yield
        return
    done = threading.Event()
    t0 = time.perf_counter()

    def tick() -> None:
        if done.wait(PHASE_DELAY_S):
            return
        while not done.wait(0.5):
            sys.stderr.write(f"\r{desc} ... {time.perf_counter() - t0:.0f} s\033[K")
            sys.stderr.flush()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if time.perf_counter() - t0 > PHASE_DELAY_S:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
