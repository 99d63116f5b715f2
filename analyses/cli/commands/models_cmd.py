"""`attnlab models`: which models exist and whether each can load on this machine."""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "models", parents=[common], help="list models and whether each can load here",
        description="List attnlab's models and whether each can load on this machine "
        "(checks files and caches only; loads no weights, touches no network).",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from probes.models import model_statuses

    statuses = model_statuses()
    width = max(len(s.name) for s in statuses)
    for s in statuses:
        mark = "available" if s.available else "unavailable"
        print(f"{s.name:<{width}}  {s.kind:<7}  {mark:<11}  {s.detail}")
    print("\nAny other TransformerLens model name also works where its weights are cached.")
    return 0
