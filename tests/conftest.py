"""Shared fixtures: one seed for every test, and models loaded once per session.

Real models are session-scoped because loading MiniLM costs ~10 s of CPU; tests must not
mutate them (no hooks left behind -- the capture tests check that).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run on CPU through Triton's interpreter; the variable must be set before
    # anything (TransformerLens, SAE-Lens) first imports triton. On a GPU they run natively.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests use tiny models: one torch thread is faster than two on a shared 2-core box
    (measured up to 20x under load), and thread count fixes float reduction order."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 as a HookedEncoder (probes.models.LoadedModel)."""
    from probes.models import load_model

    return load_model("minilm", device="cpu")


@pytest.fixture(scope="session")
def minilm_hf():
    """HF BertModel + tokenizer from the same files, the independent reference."""
    from probes.models import load_hf_minilm

    return load_hf_minilm()


@pytest.fixture(scope="session")
def organism():
    """The shipped organism checkpoint (skips only if this checkout has not built it)."""
    from probes.models import ModelNotAvailable, load_model

    try:
        return load_model("organism", device="cpu")
    except ModelNotAvailable as exc:  # pragma: no cover - the checkpoint is committed
        pytest.fail(f"the organism checkpoint must be committed: {exc}")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M (probes.smollm2), converted into the user cache on first use."""
    from probes.models import ModelNotAvailable, load_model

    try:
        return load_model("smollm2", device="cpu")
    except ModelNotAvailable as exc:  # pragma: no cover - scripts/setup.sh installs it
        pytest.fail(f"SmolLM2 must be installed (scripts/setup.sh does it): {exc}")


@pytest.fixture
def tiny_model():
    from transformer_lens import HookedTransformer

    from tests.support.tiny import tiny_cfg

    return HookedTransformer(tiny_cfg()).eval()
