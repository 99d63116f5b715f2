"""Scoped hooks: the one way attnlab attaches functions to TransformerLens hook points.

Hooks are global state on the model (TransformerLens' ``HookPoint`` docstring says so), and
analyses nest them: attribution patching records activations inside a hook that makes the
residual stream differentiable, path patching records receivers' inputs while freezing head
outputs, and the fast patching engine refuses to run while any hook is attached. So every
hook goes through :func:`scoped_hooks`, which

- checks every name first and raises :class:`UnknownHookError` (listing close names) before
  anything is registered;
- removes exactly the handles it created, in ``finally`` -- also on exceptions and
  KeyboardInterrupt -- and never calls ``reset_hooks``, which would drop other users' hooks too.

A hook function takes the activation and returns None (a *record* hook: the activation passes
on unchanged) or a tensor of the same shape (a *replace* hook: it takes the activation's place
downstream). A function that needs its hook name closes over it. Hooks are plain PyTorch
forward hooks on the ``HookPoint`` modules, so the only per-call cost is one adapter call, and
TransformerLens' own ``reset_hooks`` (run by ``run_with_hooks``) cannot remove them early.

    with scoped_hooks(model, {"blocks.1.attn.hook_z": torch.zeros_like}):   # replace
        logits = model(tokens)
    logits, acts = record(model, ["blocks.0.hook_resid_post"], lambda: model(tokens))
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from probes.models import unwrap

#: activation -> None (record) or a replacement of the same shape (replace)
HookFn = Callable[[torch.Tensor], torch.Tensor | None]
#: ``{hook_name: fn}``, or ``(hook_name, fn)`` pairs (several functions on one hook point run in
#: order, each seeing the previous one's replacement)
Hooks = Mapping[str, HookFn] | Iterable[tuple[str, HookFn]]

_LAYER_RE = re.compile(r"^blocks\.(\d+)\.")


class UnknownHookError(ValueError):
    """A requested hook name does not exist on the model (the message lists close names)."""


def hook_layer(name: str) -> int | None:
    """The block index in a hook name (``blocks.3.attn.hook_z`` -> 3), else None."""
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


def hook_count(model: Any) -> int:
    """Number of forward hooks currently registered on the model's hook points (anyone's)."""
    return sum(len(hp._forward_hooks) for hp in unwrap(model).hook_dict.values())


def check_hook_names(model: Any, names: Iterable[str]) -> None:
    """Raise :class:`UnknownHookError` for names that are not hook points of ``model``."""
    points = unwrap(model).hook_dict
    for name in names:
        if name not in points:
            valid = list(points)
            close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
            hint = f"; did you mean {close}?" if close else f"; e.g. {valid[:4]}"
            raise UnknownHookError(f"unknown hook name {name!r} for this model{hint}")


def _pairs(hooks: Hooks) -> list[tuple[str, HookFn]]:
    return list(hooks.items() if isinstance(hooks, Mapping) else hooks)


def _torch_hook(fn: HookFn):
    def hook(module, inputs, output):  # a HookPoint's output is its input: the activation
        return fn(output)

    return hook


@contextlib.contextmanager
def scoped_hooks(model: Any, hooks: Hooks) -> Iterator[None]:
    """Attach ``hooks`` (module docstring) for the ``with`` body; remove exactly them after.

    ``model`` is a TransformerLens model or a :class:`probes.models.LoadedModel`. Unknown names
    raise :class:`UnknownHookError` before anything is registered.
    """
    points = unwrap(model).hook_dict
    pairs = _pairs(hooks)
    check_hook_names(model, [name for name, _ in pairs])
    handles = []  # the torch RemovableHandles this call created, and only those
    try:
        for name, fn in pairs:
            handles.append(points[name].register_forward_hook(_torch_hook(fn)))
        yield
    finally:
        for handle in reversed(handles):
            handle.remove()


class Recording(NamedTuple):
    """What :func:`record` returns: ``output, acts = record(...)``."""

    output: Any  # what run() returned
    acts: dict[str, torch.Tensor]  # hook name -> its activation in the (last) forward pass


def record(model: Any, names: Sequence[str], run: Callable[[], Any], hooks: Hooks = ()
           ) -> Recording:
    """Run ``run()`` with the activations at ``names`` recorded (and ``hooks`` attached).

    Activations are kept as the forward pass made them, not detached: under autograd they
    keep their graph (attribution patching differentiates the metric with respect to them).
    A name that ``hooks`` also replaces is recorded after the replacement.
    """
    acts: dict[str, torch.Tensor] = {}

    def keep(name: str) -> HookFn:
        def hook(act: torch.Tensor) -> None:
            acts[name] = act

        return hook

    with scoped_hooks(model, [*_pairs(hooks), *((name, keep(name)) for name in names)]):
        output = run()
    return Recording(output, acts)
