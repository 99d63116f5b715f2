"""The one module that owns the schemas of attnlab's result tables.

Every analysis returns a long-format (tidy) pandas DataFrame: one row per
(layer, head, position, metric ...) and a single numeric ``value``-like column where
possible. Tables are saved as ``runs/<run-id>/tables/<name>.parquet`` by
:mod:`data.store`, which validates a table against its schema here when one exists.

The schemas are declared as data in ``data/schemas.toml`` (shipped as package data) and
loaded once into ``SCHEMAS``; add a table by adding one block there, everyone else imports
``SCHEMAS``. Columns map to a one-line description (units, meaning); extra columns are allowed
(they are reported by :func:`missing_columns` only when required ones are absent).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads where a table is checked: `attnlab models` stays light
    import pandas as pd


@dataclass(frozen=True)
class TableSchema:
    """The documented columns of one result table."""

    name: str  # table name, also the Parquet file stem
    description: str  # what one row is
    columns: dict[str, str] = field(default_factory=dict)  # required column -> meaning

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"table name {self.name!r} must be a Python identifier")
        if not self.columns:
            raise ValueError(f"schema {self.name!r} declares no columns")


SCHEMA_FILE = Path(__file__).with_name("schemas.toml")


def _entry(name: str, entry: object, where: str) -> TableSchema:
    """One ``[name]`` block of the schema file as a :class:`TableSchema`, or a clear error."""
    if not isinstance(entry, dict) or set(entry) != {"description", "columns"}:
        raise ValueError(f"{where}: [{name}] must hold exactly 'description' and "
                         f"[{name}.columns]")
    description, columns = entry["description"], entry["columns"]
    if not isinstance(columns, dict) or not all(
            isinstance(t, str) for t in [description, *columns.values()]):
        raise ValueError(f"{where}: [{name}] description and column meanings must be strings")
    return TableSchema(name=name, description=description, columns=dict(columns))


def _load(path: Path) -> dict[str, TableSchema]:
    """The schemas declared in ``path``, in file order.

    They are data, not code (one TOML block per table), so declaring a table repeats no code.
    """
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    return {name: _entry(name, entry, path.name) for name, entry in raw.items()}


SCHEMAS: dict[str, TableSchema] = _load(SCHEMA_FILE)


def missing_columns(name: str, df: pd.DataFrame) -> list[str]:
    """Required columns of table ``name`` that ``df`` lacks ([] if no schema is declared)."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return []
    return [c for c in schema.columns if c not in df.columns]


def validate(name: str, df: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the missing columns if ``df`` does not fit schema ``name``."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"table {name!r} must be a pandas DataFrame, got {type(df).__name__}")
    missing = missing_columns(name, df)
    if missing:
        raise ValueError(
            f"table {name!r} lacks required columns {missing}; schema: "
            f"{list(SCHEMAS[name].columns)} (see data/schemas.toml)"
        )
