"""`attnlab runs`: the runs in the store, newest first."""

from __future__ import annotations


def register(sub, common) -> None:
    p = sub.add_parser(
        "runs", parents=[common], help="list the runs in the run store",
        description="List runs (id, command, model, status, tables), newest first.",
    )
    p.add_argument("--show", metavar="RUN_ID", help="print one run's manifest")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from data.store import RunStore

    store = RunStore(args.runs_dir)
    if args.show:
        print(json.dumps(store.open_run(args.show).manifest, indent=2, default=str))
        return 0
    runs = store.list_runs()
    if runs.empty:
        print(f"no runs in {store.root}; `attnlab demo` writes one")
        return 0
    cols = ["run_id", "command", "model", "status", "started_at", "tables"]
    print(runs[cols].to_string(index=False))
    return 0
