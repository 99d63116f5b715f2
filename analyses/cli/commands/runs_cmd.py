"""`attnlab runs`: the runs in the store, newest first."""

from __future__ import annotations

from analyses.cli.options import add_command


def register(sub, common) -> None:
    p = add_command(sub, common, "runs", run, "list the runs in the run store",
                    "List runs (id, command, model, status, tables), newest first; a run "
                    "whose manifest cannot be read is listed as corrupt, with the reason.",
                    writes_runs=False)
    p.add_argument("--show", metavar="RUN_ID", help="print one run's manifest")


def run(args) -> int:
    import json

    from data.store import RunStore

    store = RunStore(args.runs_dir)
    if args.show is not None:
        print(json.dumps(store.open_run(args.show).manifest, indent=2, default=str))
        return 0
    runs = store.list_runs()
    if runs.empty:
        print(f"no runs in {store.root}; `attnlab demo` writes one")
        return 0
    cols = ["run_id", "command", "model", "status", "started_at", "tables"]
    print(runs[cols].to_string(index=False))
    return 0
