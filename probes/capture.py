"""Scoped capture: TransformerLens hooks that stream activations into accumulators.

``run_with_cache`` keeps every activation of a forward pass; over thousands of prompts that
does not fit in memory. ``capture`` instead registers one hook per requested hook point, hands
each activation to its accumulators (which reduce it at once: running sums, reservoirs, ...)
and drops it, so memory does not grow with the number of prompts.

The hooks are record hooks of :func:`probes.hooks.scoped_hooks`, so ``capture`` removes exactly
the handles it created, also on exceptions and KeyboardInterrupt, and never touches hooks that
others registered.

    with capture(loaded, {"blocks.0.attn.hook_pattern": acc}) as cap:
        for batch in batches(tokenize(loaded, prompts), 16):
            cap.forward(batch)          # passes the padding mask to the accumulators
    acc.result()                        # a tidy DataFrame

or, for a list of prompts, ``stream(loaded, prompts, {...}, batch_size=16)``.

An accumulator is any object with ``update(tensor, mask, **ctx)`` and ``result()``
(:class:`probes.accumulators.Accumulator`). ``mask`` is the (batch, pos) bool padding mask of
the current batch (True = real token), or None when the caller gave none (all real). ``ctx``
carries ``hook`` (the hook name), ``layer`` (int or None), ``prompt_index`` ((batch,) long,
position of each row in the caller's prompt list, when known) and ``str_tokens``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from probes.hooks import check_hook_names, hook_layer, scoped_hooks
from probes.models import LoadedModel, unwrap
from probes.tokens import Tokens, forward, tokenize


def _as_list(accs: Any) -> list[Any]:
    out = list(accs) if isinstance(accs, (list, tuple)) else [accs]
    for acc in out:
        if not (callable(getattr(acc, "update", None)) and callable(getattr(acc, "result", None))):
            raise TypeError(
                f"{type(acc).__name__} is not an accumulator: it needs update(tensor, mask, "
                "**ctx) and result() methods (see probes.accumulators.Accumulator)"
            )
    return out


class Capture:
    """The live side of :func:`capture`: feeds batches and holds the batch context."""

    def __init__(self, model: Any, loaded: LoadedModel | None):
        self.model = model
        self.loaded = loaded
        self.n_batches = 0
        self._mask: torch.Tensor | None = None
        self._ctx: dict[str, Any] = {}

    @contextlib.contextmanager
    def batch(self, mask: torch.Tensor | None, **ctx: Any) -> Iterator[None]:
        """Set the padding mask (batch, pos) and extra context for forwards run inside."""
        self._mask = None if mask is None else mask.bool()
        self._ctx = ctx
        try:
            yield
        finally:
            self._mask, self._ctx = None, {}
            self.n_batches += 1

    def forward(self, tokens: Tokens, prompt_index: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        """Run ``tokens`` through the model (with its padding mask) under this capture.

        Extra keyword arguments go to :func:`probes.tokens.forward` (e.g. ``stop_at_layer``).
        """
        if self.loaded is None:
            raise TypeError("Capture.forward needs capture() to be given a LoadedModel; with a "
                            "bare model, call the model yourself inside `with cap.batch(mask):`")
        mask = tokens.attention_mask.to(self.loaded.cfg.device)
        with self.batch(mask, prompt_index=prompt_index, str_tokens=tokens.str_tokens):
            return forward(self.loaded, tokens, **kwargs)

    def _hook_fn(self, name: str, accs: list[Any]):
        layer = hook_layer(name)

        def hook(tensor: torch.Tensor) -> None:
            mask = self._mask
            if mask is not None and mask.device != tensor.device:
                mask = mask.to(tensor.device)
            for acc in accs:
                acc.update(tensor.detach(), mask, hook=name, layer=layer, **self._ctx)
            return None  # record only: the activation passes through unchanged

        return hook


@contextlib.contextmanager
def capture(model_or_loaded: Any, hooks: Mapping[str, Any]) -> Iterator[Capture]:
    """Register hooks that stream activations into accumulators; remove exactly them on exit.

    ``hooks`` maps a hook name to one accumulator or a list of them; one accumulator may
    appear under several names (it gets ``ctx["hook"]`` to tell them apart). Unknown names
    raise :class:`probes.hooks.UnknownHookError` before anything is registered.
    """
    model = unwrap(model_or_loaded)
    loaded = model_or_loaded if isinstance(model_or_loaded, LoadedModel) else None
    if not hooks:
        raise ValueError("capture needs at least one {hook_name: accumulator} entry")
    check_hook_names(model, hooks)  # names before accumulators, as documented
    plan = {name: _as_list(accs) for name, accs in hooks.items()}
    cap = Capture(model, loaded)
    with scoped_hooks(model, {name: cap._hook_fn(name, accs) for name, accs in plan.items()}):
        yield cap


def length_sorted_batches(tokens: Tokens, batch_size: int) -> Iterator[tuple[Tokens, torch.Tensor]]:
    """Batches of prompts of similar length (less padding), with their original indices.

    Yields ``(Tokens, prompt_index)``; each batch is trimmed to its longest prompt.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.argsort(tokens.lengths, descending=True, stable=True)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]  # (batch,)
        width = int(tokens.lengths[idx].max())
        yield Tokens(
            tokens.ids[idx, :width], tokens.attention_mask[idx, :width], tokens.lengths[idx],
            [tokens.str_tokens[i] for i in idx.tolist()],
        ), idx


def stream(
    loaded: LoadedModel,
    prompts: str | Sequence[str],
    hooks: Mapping[str, Any],
    batch_size: int = 16,
    max_len: int | None = None,
    progress: bool = False,
) -> int:
    """Stream ``prompts`` through ``loaded`` in length-sorted batches under :func:`capture`.

    Accumulators see each batch with its padding mask and ``prompt_index`` (row -> index in
    ``prompts``). Runs under ``torch.inference_mode``. Returns the number of batches.
    """
    tokens = tokenize(loaded, prompts, max_len=max_len)
    n_batches = (len(tokens.lengths) + batch_size - 1) // max(batch_size, 1)
    # Nobody reads the logits: when every hook is inside a block, a decoder stops after the
    # last block (the unembedding is ~30% of SmolLM2's forward, with its 49152-token vocabulary).
    skip = ({"stop_at_layer": loaded.cfg.n_layers}
            if not loaded.is_encoder and all(hook_layer(name) is not None for name in hooks)
            else {})
    with capture(loaded, hooks) as cap, torch.inference_mode():
        it = length_sorted_batches(tokens, batch_size)
        for batch, idx in tqdm(it, total=n_batches, disable=not progress, desc="capture"):
            cap.forward(batch, prompt_index=idx, **skip)
    return n_batches
