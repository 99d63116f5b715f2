"""`attnlab models`: which models exist and whether each can load on this machine."""

from __future__ import annotations

from analyses.cli.options import add_command


def register(sub, common) -> None:
    add_command(sub, common, "models", run, "list models and whether each can load here",
                "List attnlab's models and whether each can load on this machine (checks "
                "files and caches only; loads no weights, touches no network).",
                writes_runs=False)


def run(args) -> int:
    from probes.models import model_statuses

    statuses = model_statuses()
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "available" if s.available else "unavailable"
        print(f"{s.name:<{width}}  {s.kind:<7}  {mark:<11}  {s.detail}")
    print("\nAny other TransformerLens model name also works where its weights are cached.")
    return 0
