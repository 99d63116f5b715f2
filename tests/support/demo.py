"""A run store written by the real ``attnlab demo`` stages on tiny samples, built once per session.

Unlike :mod:`tests.support.store` (hand-made tables), every table here comes from the analyses
themselves, so the dashboard tests check what a user sees after ``attnlab demo``.

    root, results = demo_store(tmp_path_factory, minilm, organism, smollm2)

``smollm2`` is optional: without it the stage loads SmolLM2 itself (from the user cache), so
callers that already hold the session's ``smollm2`` fixture should pass it.
"""

from __future__ import annotations

from pathlib import Path

from analyses.cli.demo import STAGE_NAMES, DemoConfig, Models, StageResult, run_stage
from data.store import RunStore

#: Small enough for a test (~15 s CPU in all, ~6 s of it SmolLM2's stage once the model is
#: loaded), large enough for every figure to have data.
TINY = DemoConfig(n_sentences=8, n_items=8, max_drop=2, timing_repeats=1, sae_tokens=400,
                  sae_eval_tokens=300, smollm2_sentences=8, smollm2_pairs=4,
                  intervention_tokens=200, edge_pairs=8, device="cpu")

_BUILT: dict[str, tuple[Path, list[StageResult]]] = {}


def build_demo_store(root: Path, minilm, organism, smollm2=None) -> list[StageResult]:
    """Run every demo stage into ``root`` with the session's already-loaded models."""
    loaded = tuple(m for m in (minilm, organism, smollm2) if m is not None)
    store, models = RunStore(root), Models("cpu", preloaded=loaded)
    return [run_stage(name, store, TINY, models) for name in STAGE_NAMES]


def demo_store(tmp_path_factory, minilm, organism,
               smollm2=None) -> tuple[Path, list[StageResult]]:
    """The session's demo store (built on first use; tests must not write into it)."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        root = tmp_path_factory.mktemp("demo") / "runs"
        _BUILT[key] = (root, build_demo_store(root, minilm, organism, smollm2))
    return _BUILT[key]
