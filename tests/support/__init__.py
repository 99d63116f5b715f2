"""Helpers shared by the tests (tiny models, fixture stores, patching cases); not tests."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/__init__.py
