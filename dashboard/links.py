"""Links to one SAE feature from anywhere in the app: ``/sae_features?feature=N``.

The SAE features page reads the ``feature`` query parameter (``st.query_params``) and opens
that feature; every table that shows feature ids renders them as such links.
"""

from __future__ import annotations

import streamlit as st

FEATURE_PARAM = "feature"
PAGE_PATH = "/sae_features"


def feature_url(feature: int) -> str:
    """The address of the SAE features page opened on ``feature``."""
    return f"{PAGE_PATH}?{FEATURE_PARAM}={int(feature)}"


def feature_link_column(label: str = "feature"):
    """A ``column_config`` that renders a column of feature ids as links to the feature."""
    return st.column_config.LinkColumn(
        label, help="opens the feature on the SAE features page",
        display_text=rf"{PAGE_PATH}\?{FEATURE_PARAM}=(\d+)")


def with_feature_links(df, column: str = "feature"):
    """``df`` with the feature ids of ``column`` as :func:`feature_url` addresses."""
    return df.assign(**{column: [feature_url(f) for f in df[column]]})


def wanted_feature() -> int | None:
    """The feature the address asks for (``?feature=N``), or None."""
    value = st.query_params.get(FEATURE_PARAM)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
