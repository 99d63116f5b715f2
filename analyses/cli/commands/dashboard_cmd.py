"""`attnlab dashboard`: start the Streamlit dashboard on the run store (127.0.0.1 by default).

Serves the dashboard (runs, attention, massive activations, SAE features, redundancy,
circuits) at http://HOST:PORT, bound to 127.0.0.1 unless --host says otherwise; Ctrl-C stops
it (so do SIGTERM and SIGHUP: the server child is stopped with it). The dashboard sits above
`analyses` in the layering, so this command only locates
`dashboard/app.py` (no import) and runs `python -m streamlit run` on it in a subprocess,
passing the run store as $ATTNLAB_RUNS.

    attnlab dashboard --runs-dir runs --port 8501
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from analyses.cli.checks import UsageError
from analyses.cli.options import add_command

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def register(sub, common) -> None:
    p = add_command(sub, common, "dashboard", run,
                    "open the Streamlit dashboard on the run store", __doc__, writes_runs=False)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8501)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")


def app_path() -> Path:
    """Path of ``dashboard/app.py``, found without importing the dashboard package."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None:
        raise FileNotFoundError("the 'dashboard' package is not installed: `pip install -e .`")
    folders = [Path(spec.origin).parent] if spec.origin else []
    folders += [Path(p) for p in (spec.submodule_search_locations or [])]
    for folder in folders:
        if (folder / "app.py").is_file():
            return folder / "app.py"
    raise FileNotFoundError(f"no dashboard/app.py in {[str(f) for f in folders]}; "
                            "reinstall attnlab (`pip install -e .`)")


def streamlit_command(app: Path, host: str, port: int) -> list[str]:
    """The ``python -m streamlit run`` command line for ``app`` (offline, no telemetry)."""
    import sys

    return [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--global.developmentMode", "false", "--client.toolbarMode", "minimal"]


def run(args) -> int:
    import os
    import subprocess

    from data.store import RunStore

    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if not args.host.strip():
        raise UsageError("--host is empty: give an address to bind, e.g. 127.0.0.1")
    root = RunStore(args.runs_dir).root
    env = dict(os.environ, ATTNLAB_RUNS=str(root))
    if args.device:
        env["ATTNLAB_DEVICE"] = args.device
    print(f"attnlab dashboard: http://{args.host}:{args.port}  (runs: {root}; Ctrl-C stops it)",
          flush=True)
    proc = subprocess.Popen(streamlit_command(app_path(), args.host, args.port), env=env)
    return serve(proc)


class Stopped(Exception):
    """SIGTERM / SIGHUP arrived: stop the server child and exit."""


def _stop(signum, frame):
    raise Stopped(signum)


def serve(proc, grace_s: float = 10.0) -> int:
    """Wait for the streamlit child ``proc``; Ctrl-C, SIGTERM or SIGHUP to this process stop
    the child too (terminate, then kill after ``grace_s``), so no server is left serving
    after `attnlab dashboard` is gone. Exit code: the child's, 0 after Ctrl-C, 128 + signal
    after a signal."""
    import signal
    import subprocess

    wanted = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    old = {s: signal.signal(s, _stop) for s in wanted}
    code = None
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = 0
    except Stopped as stop:
        code = 128 + int(stop.args[0])
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return code
