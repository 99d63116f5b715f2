"""A run store with one `attnlab heads` run of the organism and one of SmolLM2 (tiny samples),
written by the real library path, for the head explorer's dashboard tests (AppTest, Chromium)."""

from __future__ import annotations

from pathlib import Path

from analyses.qk.explorer import explorer_tables
from data.store import RunStore
from probes.head_scores import HeadScoreConfig


def heads_store(root: Path, organism, smollm2) -> Path:
    """Write the two runs into ``root`` (organism first, so SmolLM2's is the newest)."""
    store = RunStore(root)
    for loaded, n in ((organism, 4), (smollm2, 2)):
        tables = explorer_tables(loaded, loaded.name, n=n, qk_top=1,
                                 config=HeadScoreConfig(top_k=1))
        with store.start_run(command="heads", model=loaded.name, config={"n": n}) as run:
            for name, df in tables.items():
                run.write_table(name, df)
    return root
