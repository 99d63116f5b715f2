"""Session state shared by the pages: the selected run, and the one run picker of each page.

The Runs page sets the selected run. Every other page has ONE run selector at its top
(:func:`page_run`) over the completed runs holding any of the page's tables, preselecting the
selected run when it is one of them (else the newest); picking a run there selects it for the
other pages too. Every section of the page then reads its table from that run only
(:func:`section`), so a page never mixes models: a table the run lacks is a caption with the
command that writes it for the run's own model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd
import streamlit as st

from dashboard import howto, readers
from data.store import StoreError

RUN_KEY = "attnlab_run_id"
PICKED_KEY = "attnlab_run_picked"


class Loaded(NamedTuple):
    """A table read from a chosen run."""

    run_id: str
    model: str | None
    df: pd.DataFrame


class PageRun(NamedTuple):
    """The run a page shows: its id, model and the tables its manifest lists."""

    run_id: str
    model: str | None
    tables: frozenset[str]


def selected_run() -> str | None:
    return st.session_state.get(RUN_KEY)


def select_run(run_id: str | None) -> None:
    st.session_state[RUN_KEY] = run_id


def mark_picked() -> None:
    """The user picked the selected run (not just the default shown): pages open on it even
    when it lacks their main table."""
    st.session_state[PICKED_KEY] = True


def _label(runs: pd.DataFrame):
    by_id = runs.set_index("run_id")
    return lambda rid: f"{rid}  ·  {by_id.at[rid, 'model']}  ·  {by_id.at[rid, 'command']}"


def page_run(tables: Sequence[str], key: str, label: str = "Run") -> PageRun | None:
    """The page-wide run selector: completed runs holding any of ``tables``, newest first.

    Preselects the selected run when it holds the page's main table ``tables[0]`` or the
    user picked it, else the newest run holding ``tables[0]``. Shows how to produce
    ``tables[0]`` when no run holds any of them. The choice becomes the selected run (the
    Runs page and the other pages preselect it).
    """
    runs = readers.runs_with_any_table(tables)
    if runs.empty:
        howto.show_missing(tables[0])
        return None
    ids = list(runs["run_id"])
    main = [rid for rid, t in zip(ids, runs["tables"]) if tables[0] in str(t).split(",")]
    chosen = selected_run()
    picked = chosen in main or (chosen in ids and st.session_state.get(PICKED_KEY))
    index = ids.index(chosen if picked else (main or ids)[0])
    run_id = st.selectbox(label, ids, index=index, format_func=_label(runs), key=key,
                          help="Every section of this page shows this run.",
                          on_change=mark_picked)
    select_run(run_id)
    row = runs.set_index("run_id").loc[run_id]
    model = row["model"] if isinstance(row["model"], str) else None
    return PageRun(run_id, model, frozenset(str(row["tables"]).split(",")))


def run_of(run_id: str) -> PageRun | None:
    """The :class:`PageRun` of ``run_id`` (a page whose run is chosen otherwise); None and a
    message when its manifest cannot be read."""
    try:
        manifest = readers.manifest(run_id)
    except StoreError as exc:
        howto.show_store_error(exc)
        return None
    return PageRun(run_id, manifest.get("model"), frozenset(manifest.get("tables", [])))


def run_config(run_id: str) -> dict:
    """The ``config`` of a run's manifest ({} when absent or unreadable)."""
    try:
        config = readers.manifest(run_id).get("config")
    except StoreError:
        return {}
    return config if isinstance(config, dict) else {}


def section(run: PageRun | None, table: str, allow_empty: bool = False) -> Loaded | None:
    """``table`` of the page's run, or a caption with the command that writes it for the run's
    model when the run has no such table (never another run's or another model's table).
    None, silently, when the page has no run (:func:`page_run` already said why)."""
    if run is None:
        return None
    if table not in run.tables:
        st.caption(f"Run `{run.run_id}` ({run.model}) has no **{table}** table; "
                   f"`{howto.command_for(table, run.model)}` writes it.")
        return None
    return read(run.run_id, table, allow_empty=allow_empty)


def choose_run(table: str, key: str, label: str = "Run",
               prefer: str | None = None) -> str | None:
    """A run picker over completed runs holding ``table``; shows how to produce it if none.

    Preselects ``prefer`` (e.g. the run another section of the page shows) if it holds the
    table, else the run picked on the Runs page, else the newest.
    """
    runs = readers.runs_with_table(table)
    if runs.empty:
        howto.show_missing(table)
        return None
    ids = list(runs["run_id"])
    current = prefer if prefer in ids else selected_run()
    index = ids.index(current) if current in ids else 0
    return st.selectbox(label, ids, index=index, format_func=_label(runs), key=key)


def load(table: str, key: str, label: str = "Run", prefer: str | None = None) -> Loaded | None:
    """Pick a run holding ``table`` and read it; on any store error show why and return None."""
    run_id = choose_run(table, key=key, label=label, prefer=prefer)
    if run_id is None:
        return None
    return read(run_id, table)


def read(run_id: str, table: str, allow_empty: bool = False) -> Loaded | None:
    """Read ``table`` of ``run_id``; a missing/corrupt file becomes a message, not a traceback."""
    model = None
    try:
        model = readers.manifest(run_id).get("model")
        df = readers.read_table(run_id, table)
    except StoreError as exc:
        howto.show_store_error(exc, table, model)
        return None
    if df.empty and not allow_empty:
        st.warning(f"Table **{table}** of run `{run_id}` is empty.")
        st.code(howto.command_for(table, model), language="bash")
        return None
    return Loaded(run_id, model, df)


def read_optional(run_id: str, table: str, allow_empty: bool = False) -> Loaded | None:
    """Like :func:`read`, but a table the run never wrote is a one-line caption."""
    try:
        tables = readers.manifest(run_id).get("tables", [])
    except StoreError as exc:
        howto.show_store_error(exc, table)
        return None
    if table not in tables:
        model = readers.manifest(run_id).get("model")
        st.caption(f"Run `{run_id}` has no **{table}** table; "
                   f"`{howto.command_for(table, model)}` writes it.")
        return None
    return read(run_id, table, allow_empty=allow_empty)
