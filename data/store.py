"""The run store: every analysis writes a *run*, a folder the dashboard and reports read.

Layout::

    <root>/<run-id>/manifest.json        what was run and how it ended
    <root>/<run-id>/tables/<name>.parquet long-format tables (schemas in data.schemas)
    <root>/<run-id>/<anything else>       figures, reports, SAE files ...

``<root>`` is ``--runs-dir``, else ``$ATTNLAB_RUNS``, else ``./runs``.

Every file is written atomically (a temporary file in the same folder, then ``os.replace``),
so a run killed mid-write never leaves a half-written table and never clobbers the previous
version of a file. The manifest's ``status`` is ``running`` while the run is open,
``complete`` or ``failed`` when it closes; a run whose process died without closing it is
reported as ``interrupted`` by :meth:`RunStore.list_runs`.

A command that fails: commands check their arguments (and the model's sizes) before they
start a run, so a bad request leaves no run at all. A command that fails *after* its run was
created leaves that run in the store, marked ``failed``, with the error (``"ValueError: ..."``)
in the manifest's ``error`` and the tables written so far; it is kept, not deleted, so that
the failure can be read later (``attnlab runs --show RUN_ID``), and pages only offer completed
runs. The store root must be a writable folder; one that is a file or cannot be written is a
:class:`StoreError` naming it.

Reading is by type: :attr:`Run.checked_manifest` checks every field attnlab reads
(``MANIFEST_FIELDS``), so one odd but valid JSON manifest (``"tables": null``, a numeric
``started_at``) shows that run as ``corrupt``, naming the field, and leaves the others alone.

Usage::

    store = RunStore()
    with store.start_run(command="probe", model="minilm", config={"what": "entropy"}) as run:
        run.write_table("entropy", df)
    store.open_run(run.run_id).read_table("entropy")
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas loads where a table is read: `attnlab models` stays light
    import pandas as pd

from data import schemas

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TABLE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
ENV_VAR = "ATTNLAB_RUNS"
STATUSES = ("running", "complete", "failed")
MAX_PID = 2**31 - 1  # pid_t is a C int: larger values are not process ids (os.kill overflows)
#: The manifest fields attnlab reads and the JSON types a readable manifest holds them as
#: (absent is allowed: older manifests lack some). ``None`` stands for JSON null.
MANIFEST_FIELDS: dict[str, tuple[type | None, ...]] = {
    "run_id": (str,), "command": (str, None), "model": (str, None), "config": (dict, None),
    "versions": (dict, None), "git_revision": (str, None), "status": (str,),
    "started_at": (str, None), "ended_at": (str, None), "duration_s": (int, float, None),
    "pid": (int, None), "host": (str, None), "tables": (list,), "error": (str, None),
}


class StoreError(RuntimeError):
    """A problem with the run store that the user can act on (the message says how)."""


class TableNotFound(StoreError):
    """A requested table does not exist in a run."""


class CorruptFile(StoreError):
    """A manifest or table exists but cannot be read."""


# ----------------------------------------------------------------------------- atomic writes


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, else it is removed.

    For writers that want a file name rather than bytes (``safetensors.torch.save_file``,
    ``DataFrame.to_parquet``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- helpers


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe folder name, else raise ``ValueError``."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return run_id


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result, for the manifest."""
    import importlib.metadata as md
    import platform

    versions = {"python": platform.python_version()}
    for pkg in ["attnlab", "torch", "transformer-lens", "sae-lens", "transformers", "triton"]:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return versions


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError, OSError):  # not a process id this system can have
        return False
    return True


def _type_names(types: tuple[type | None, ...]) -> str:
    return " or ".join("null" if t is None else t.__name__ for t in types)


def _field_problem(name: str, value: Any) -> str | None:
    """Why manifest field ``name`` cannot be read as ``value`` (None when it can)."""
    types = MANIFEST_FIELDS[name]
    if value is None:
        return None if None in types else f"{name!r} is null, expected {_type_names(types)}"
    real = tuple(t for t in types if t is not None)
    if isinstance(value, bool) or not isinstance(value, real):  # JSON true is not a number
        return f"{name!r} is {type(value).__name__} {value!r:.60}, expected {_type_names(types)}"
    if name == "status" and value not in STATUSES:
        return f"'status' is {value!r:.60}, expected one of {', '.join(STATUSES)}"
    if name == "pid" and not 0 < value <= MAX_PID:
        return f"'pid' {value} is not a process id (1..{MAX_PID})"
    if name == "tables":
        bad = [t for t in value if not isinstance(t, str) or not TABLE_NAME_RE.match(t)]
        if bad:
            return f"'tables' lists {bad[:3]!r:.60}, which are not table names"
    return None


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """The fields of ``manifest`` that attnlab cannot read ([] for a readable manifest)."""
    return [p for name in MANIFEST_FIELDS if name in manifest
            and (p := _field_problem(name, manifest[name])) is not None]


# ----------------------------------------------------------------------------- runs


class Run:
    """One run folder: its manifest and tables."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.run_id = validate_run_id(self.path.name)

    @property
    def tables_dir(self) -> Path:
        return self.path / "tables"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def manifest(self) -> dict[str, Any]:
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CorruptFile(
                f"run {self.run_id!r} has no manifest at {self.manifest_path}; "
                "it was not written by attnlab or was deleted — re-run the command"
            ) from None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptFile(
                f"manifest {self.manifest_path} is not valid JSON ({exc}); "
                "delete the run folder and re-run the command"
            ) from None
        if not isinstance(manifest, dict):
            raise CorruptFile(f"manifest {self.manifest_path} is not a JSON object")
        return manifest

    @property
    def checked_manifest(self) -> dict[str, Any]:
        """The manifest, every field attnlab reads of its type (``MANIFEST_FIELDS``); else
        ``CorruptFile`` naming the fields. Readers use this; :attr:`manifest` is the raw JSON
        object (what ``update_manifest`` rewrites)."""
        manifest = self.manifest
        problems = manifest_problems(manifest)
        if problems:
            raise CorruptFile(f"manifest {self.manifest_path} cannot be read: "
                              f"{'; '.join(problems)}; re-run the command that wrote it")
        return manifest

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.manifest
        manifest.update(fields)
        atomic_write_json(self.manifest_path, manifest)
        return manifest

    def table_path(self, name: str) -> Path:
        if not TABLE_NAME_RE.match(name):
            raise ValueError(f"invalid table name {name!r}: use letters, digits and '_'")
        return self.tables_dir / f"{name}.parquet"

    def list_tables(self) -> list[str]:
        if not self.tables_dir.is_dir():
            return []
        return sorted(p.stem for p in self.tables_dir.glob("*.parquet"))

    def has_table(self, name: str) -> bool:
        return self.table_path(name).is_file()

    def write_table(self, name: str, df: pd.DataFrame) -> Path:
        """Validate ``df`` against ``data.schemas`` (if declared) and save it atomically."""
        schemas.validate(name, df)
        path = self.table_path(name)
        with atomic_path(path) as tmp:
            df.reset_index(drop=True).to_parquet(tmp, index=False)
        tables = sorted(set(self.checked_manifest.get("tables", [])) | {name})
        self.update_manifest(tables=tables)
        return path

    def read_table(self, name: str) -> pd.DataFrame:
        path = self.table_path(name)
        if not path.is_file():
            raise TableNotFound(
                f"run {self.run_id!r} has no table {name!r} (expected {path}); "
                f"tables present: {self.list_tables() or 'none'}"
            )
        import pandas as pd

        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise CorruptFile(
                f"table {path} is corrupt or truncated ({type(exc).__name__}: {exc}); "
                "re-run the command that wrote it"
            ) from None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


class RunStore:
    """A folder of runs. ``root``: explicit path, else ``$ATTNLAB_RUNS``, else ``./runs``."""

    def __init__(self, root: str | Path | None = None):
        root = root or os.environ.get(ENV_VAR) or "runs"
        self.root = Path(root).expanduser().resolve()

    def check_root(self, write: bool = False) -> Path:
        """The root, if it can be used: a folder (or not yet there), writable when ``write``.

        Raises :class:`StoreError` naming the folder and what to do; the CLI calls it before
        any model work, the store before it reads or writes runs.
        """
        where = f"(--runs-dir or ${ENV_VAR})"
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"the run store {self.root} {where} is not a folder: it is a "
                             "file; pass a folder (it is created if missing)")
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise StoreError(f"the run store {self.root} {where} cannot be created: "
                             f"{existing} is a file, not a folder; pass another folder")
        if write and existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise StoreError(f"the run store {self.root} {where} is not writable ({existing} "
                             "cannot be written); pass a writable folder")
        return self.root

    def new_run_id(self, command: str) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", command).strip("-")[:40] or "run"
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{slug}-{secrets.token_hex(3)}"

    def open_run(self, run_id: str) -> Run:
        path = self.check_root() / validate_run_id(run_id)
        if not path.is_dir():
            raise StoreError(
                f"no run {run_id!r} in {self.root}; `attnlab runs` lists the runs there "
                f"(set --runs-dir or ${ENV_VAR} to look elsewhere)"
            )
        return Run(path)

    @contextlib.contextmanager
    def start_run(
        self,
        command: str,
        model: str | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Iterator[Run]:
        """Open a new run; it is marked ``complete`` on exit, ``failed`` (with the error) on any
        exception, which is re-raised."""
        run_id = validate_run_id(run_id) if run_id else self.new_run_id(command)
        path = self.check_root(write=True) / run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot create the run folder {path} ({exc.strerror or exc}): "
                             f"the run store must be a writable folder; pass another "
                             f"--runs-dir (or set ${ENV_VAR})") from exc
        run = Run(path)
        atomic_write_json(run.manifest_path, {
            "run_id": run_id, "command": command, "model": model, "config": config or {},
            "versions": package_versions(), "git_revision": _git_revision(),
            "started_at": _now(), "ended_at": None, "status": "running",
            "pid": os.getpid(), "host": socket.gethostname(), "tables": [],
        })
        t0 = _dt.datetime.now(_dt.UTC)
        try:
            yield run
        except BaseException as exc:
            with contextlib.suppress(OSError, StoreError):  # exc is re-raised regardless
                run.update_manifest(
                    status="failed", ended_at=_now(), error=f"{type(exc).__name__}: {exc}",
                    duration_s=(_dt.datetime.now(_dt.UTC) - t0).total_seconds(),
                )
            raise
        run.update_manifest(
            status="complete", ended_at=_now(),
            duration_s=(_dt.datetime.now(_dt.UTC) - t0).total_seconds(),
        )

    def _status(self, manifest: dict[str, Any]) -> str:
        status = manifest.get("status", "unknown")
        if (
            status == "running"
            and manifest.get("host") == socket.gethostname()
            and isinstance(manifest.get("pid"), int)
            and not _pid_alive(manifest["pid"])
        ):
            return "interrupted"
        return status

    def list_runs(self) -> pd.DataFrame:
        """One row per run folder, newest first; unreadable runs appear with status 'corrupt'
        (a manifest that is not JSON, or a field of the wrong type) and the reason in 'error'.
        """
        cols = ["run_id", "command", "model", "status", "started_at", "ended_at", "tables",
                "error"]
        rows = []
        if self.check_root().is_dir():
            for path in sorted(self.root.iterdir()):
                if not path.is_dir() or not RUN_ID_RE.match(path.name):
                    continue
                try:
                    m = Run(path).checked_manifest
                except CorruptFile as exc:
                    rows.append({"run_id": path.name, "status": "corrupt", "error": str(exc)})
                    continue
                rows.append({
                    "run_id": path.name, "command": m.get("command"), "model": m.get("model"),
                    "status": self._status(m), "started_at": m.get("started_at"),
                    "ended_at": m.get("ended_at"), "tables": ",".join(m.get("tables", [])),
                    "error": m.get("error"),
                })
        import pandas as pd

        df = pd.DataFrame(rows, columns=cols)
        return df.sort_values("started_at", ascending=False, na_position="last").reset_index(
            drop=True
        )

    def find_runs(self, table: str, model: str | None = None) -> list[Run]:
        """Completed runs (newest first) that hold ``table`` (and used ``model`` if given)."""
        runs = self.list_runs()
        out = []
        for _, row in runs.iterrows():
            if row["status"] != "complete" or table not in str(row["tables"]).split(","):
                continue
            if model is not None and row["model"] != model:
                continue
            out.append(Run(self.root / row["run_id"]))
        return out
