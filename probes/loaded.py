"""What a loaded model is: :class:`LoadedModel`, its kind checks, and the loaders' shared parts.

Kept apart from :mod:`probes.models` (which dispatches ``load_model`` by name) so that each
model's own loader (:mod:`probes.smollm2`, ...) can use these without importing the dispatcher
that imports it.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["decoder", "encoder"]

class ModelNotAvailable(RuntimeError):
    """The named model cannot be loaded on this machine; the message says how to fix it."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for hooks, with the tokenizer that matches it."""

    model: Any  # HookedTransformer | HookedEncoder
    tokenizer: Any  # a HF tokenizer
    kind: Kind  # "decoder" (causal LM) or "encoder" (bidirectional, e.g. BERT)
    name: str  # the name it was loaded by

    @property
    def cfg(self) -> Any:
        return self.model.cfg

    @property
    def is_encoder(self) -> bool:
        """Bidirectional (BERT-style, post-LN) rather than a causal decoder."""
        return self.kind == "encoder"


def unwrap(model_or_loaded: Any) -> Any:
    """The TransformerLens model inside a :class:`LoadedModel`, or the model itself.

    The one place that decides what counts as a model: a LoadedModel, or anything with
    TransformerLens' ``hook_dict`` (HookedTransformer, HookedEncoder, a pruned copy).
    """
    if isinstance(model_or_loaded, LoadedModel):
        return model_or_loaded.model
    if not hasattr(model_or_loaded, "hook_dict"):
        raise TypeError(
            f"expected a LoadedModel or a TransformerLens model (with hook_dict), got "
            f"{type(model_or_loaded).__name__}")
    return model_or_loaded


def is_encoder(model_or_loaded: Any) -> bool:
    """Whether a LoadedModel or TransformerLens model is a bidirectional encoder (HookedEncoder).

    Decided by the model's class (isinstance), so a bare HookedEncoder and a LoadedModel of
    kind "encoder" agree.
    """
    if isinstance(model_or_loaded, LoadedModel):
        return model_or_loaded.is_encoder
    from transformer_lens import HookedEncoder

    return isinstance(unwrap(model_or_loaded), HookedEncoder)


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model can be loaded here, and why (for `attnlab models`)."""

    name: str
    kind: str
    available: bool
    detail: str


@contextlib.contextmanager
def quiet_tl():
    """TransformerLens' BERT warns on every construction (deprecation, experimental)."""
    tl_logger = logging.getLogger()
    level = tl_logger.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tl_logger.setLevel(max(level, logging.ERROR))
        try:
            yield
        finally:
            tl_logger.setLevel(level)


@contextlib.contextmanager
def no_progress_bars():
    """transformers draws a weight-loading bar on every load; it is noise in attnlab's output."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()
