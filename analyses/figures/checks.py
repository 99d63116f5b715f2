"""Input checks shared by the pure DataFrame -> plotly figure modules."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def require_columns(
    df: pd.DataFrame, columns: Sequence[str], what: str,
    hint: str = "re-run the command that wrote it",
) -> None:
    """Raise a clear error unless ``df`` is a non-empty DataFrame holding ``columns``."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: table lacks columns {missing} (has {list(df.columns)})")
    if df.empty:
        raise ValueError(f"{what}: the table is empty; {hint}")
