"""Massive-activation interventions (Sun et al. 2024, "Massive Activations in LLMs", §3).

Sun et al. set the massive activations, at the layer where they first appear, to zero (the
model collapses) or to their empirical mean (perplexity barely moves), and conclude that they
act as fixed biases. This module makes that experiment on any model attnlab loads:

1. :func:`find_sites` runs the existing probe (:mod:`probes.massive`, same thresholds) over a
   reference set and reads off the **emergence layer** (the first layer whose
   ``hook_resid_post`` holds a massive activation), the **sites** there -- the (token, dim)
   pairs that carry them (Sun et al.: fixed dims, on the first token and delimiters) -- and each
   site's **mean** signed value over the reference set's massive entries;
2. :func:`patch_residual` rewrites one (batch, pos, d_model) residual stream at that layer: on
   every real position whose token is a site's token, the site's dim is set to zero (``zero``)
   or to the site's reference mean (``mean``); the control (``random``) sets as many random
   real, non-site (position, dim) entries per sequence to zero (one draw per seed, each
   sequence's seeded by its global index, :func:`draw_seed`). Sites are
   matched by token, not by the threshold in each sequence: a value just under the cut in one
   sequence is the same activation;
3. :class:`MassivePatch` is that rewrite as a replace hook for :func:`probes.hooks.scoped_hooks`.

Why not TransformerLens' ``patching``: it patches one activation from another run; here the
entries to patch are found in the running activation itself, per sequence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
import torch

from probes.capture import capture
from probes.massive import MassiveConfig, massive_hooks, massive_summary
from probes.models import LoadedModel
from probes.tokens import Tokens, batches

CONDITIONS = ("none", "zero", "mean", "random")
SUN = MassiveConfig()  # Sun et al. 2024's thresholds (the probe's defaults)


class NoMassiveActivations(ValueError):
    """The probe found no massive activation at the given thresholds (the message says how
    close the model came and which option lowers them)."""


@dataclass(frozen=True)
class MassiveSites:
    """Where a model's massive activations live, read from the probe on a reference set.

    One site per (token, dim) pair that carried a massive activation at the emergence layer.
    """

    layer: int  # emergence layer: the first whose hook_resid_post holds one
    token_ids: tuple[int, ...]  # per site: the carrying token's id
    dims: tuple[int, ...]  # per site: the residual dim
    means: tuple[float, ...]  # per site: mean signed value of its massive entries (reference)
    counts: tuple[int, ...]  # per site: massive entries seen in the reference set
    tokens: tuple[str, ...]  # per site: the carrying token as a string
    config: MassiveConfig = field(default_factory=lambda: SUN)

    def __post_init__(self) -> None:
        n = len(self.dims)
        if not n or any(len(t) != n for t in (self.token_ids, self.means, self.counts,
                                              self.tokens)):
            raise ValueError("MassiveSites needs one token id, mean, count and token per site "
                             "(>= 1 site)")

    @property
    def hook_name(self) -> str:
        return f"blocks.{self.layer}.{self.config.hook}"

    def table(self) -> pd.DataFrame:
        """Table ``massive_sites``: layer, dim, token, token_id, mean, count."""
        return pd.DataFrame({"layer": self.layer, "dim": list(self.dims),
                             "token": list(self.tokens), "token_id": list(self.token_ids),
                             "mean": list(self.means), "count": list(self.counts)})


@torch.no_grad()
def find_sites(loaded: LoadedModel, tokens: Tokens, config: MassiveConfig = SUN,
               batch_size: int = 16, layer: int | None = None) -> MassiveSites:
    """The emergence layer (or ``layer``) and the (token, dim) sites and reference means of
    ``loaded``'s massive activations there.

    Raises :class:`NoMassiveActivations` when the probe finds none on ``tokens`` (at ``layer``).
    """
    plan = massive_hooks(loaded.model, config)
    with capture(loaded, plan.hooks) as cap:
        for start, b in zip(range(0, len(tokens.ids), batch_size), batches(tokens, batch_size)):
            cap.forward(b, prompt_index=torch.arange(start, start + len(b.ids)))
    found = plan.table()
    if layer is not None:
        found = found[found["layer"] == layer]
    if found.empty:
        ratio = massive_summary(plan.accumulators).query("stat == 'ratio'").set_index("layer")
        top = ratio["value"].idxmax()
        where = "" if layer is None else f" at layer {layer}"
        raise NoMassiveActivations(
            f"no massive activation in {loaded.name!r}{where} at |value| > "
            f"{config.abs_threshold:g} and > {config.ratio_threshold:g}x the median (largest "
            f"mean top-1/median ratio {ratio['value'].max():.0f}x at layer {top}): lower "
            "--massive-ratio/--massive-abs")
    at = found[found["layer"] == found["layer"].min()]
    at = at.assign(token_id=tokens.ids[at["prompt"].tolist(), at["position"].tolist()].numpy())
    g = at.groupby(["token_id", "dim"])
    keys = list(g.size().index)
    return MassiveSites(
        layer=int(at["layer"].iloc[0]), token_ids=tuple(int(t) for t, _ in keys),
        dims=tuple(int(d) for _, d in keys), means=tuple(float(v) for v in g["value"].mean()),
        counts=tuple(int(c) for c in g.size()), tokens=tuple(str(t) for t in g["token"].first()),
        config=config)


def site_entries(ids: torch.Tensor, mask: torch.Tensor | None, sites: MassiveSites,
                 d_model: int) -> torch.Tensor:
    """(batch, pos, d_model) bool: the entries (real position p, dim d) whose token ids[b, p]
    and dim d form a site."""
    out = torch.zeros(*ids.shape, d_model, dtype=torch.bool, device=ids.device)
    real = (torch.ones_like(ids, dtype=torch.bool) if mask is None
            else mask.bool().to(ids.device))
    for token, dim in zip(sites.token_ids, sites.dims):
        out[..., dim] |= (ids == token) & real
    return out


def draw_seed(seed: int, draw: int, sequence: int) -> int:
    """The seed of one sequence's random-control draw: fixed by (seed, draw, global sequence
    index) alone, so it is the same however the sequences are batched or split over ranks."""
    digest = hashlib.blake2b(f"{seed},{draw},{sequence}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def random_entries(sites: torch.Tensor, mask: torch.Tensor | None,
                   seeds: Sequence[int]) -> torch.Tensor:
    """(batch, pos, d_model) bool: per sequence, as many entries as it has ``sites`` entries,
    drawn uniformly without replacement from its real entries that are not sites, with
    ``seeds[b]`` seeding sequence b's draw (over its real positions only, so padding does not
    change it)."""
    b, p, d = sites.shape
    if len(seeds) != b:
        raise ValueError(f"need one seed per sequence: {len(seeds)} seeds for {b} sequences")
    real = (torch.ones(b, p, dtype=torch.bool) if mask is None else mask.bool().cpu())
    site = sites.cpu()
    k = site.reshape(b, -1).sum(1)  # (batch,)
    out = torch.zeros(b, p, d, dtype=torch.bool)
    for i in range(b):
        if int(k[i]) == 0:
            continue
        pos = real[i].nonzero().squeeze(1)  # (real_pos,)
        allowed = ~site[i, pos]  # (real_pos, d_model)
        if int(allowed.sum()) < int(k[i]):
            raise ValueError("a sequence has fewer non-site entries than site ones")
        gen = torch.Generator().manual_seed(seeds[i])
        score = torch.rand(len(pos), d, generator=gen).masked_fill(~allowed, -1.0)
        top = score.reshape(-1).topk(int(k[i])).indices  # (k,)
        out[i, pos[top // d], top % d] = True
    return out.to(sites.device)


class Patched(NamedTuple):
    """A rewritten residual stream and the entries that were rewritten."""

    resid: torch.Tensor  # (batch, pos, d_model)
    entries: torch.Tensor  # (batch, pos, d_model) bool


def patch_residual(resid: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor | None,
                   sites: MassiveSites, condition: str,
                   seeds: Sequence[int] | None = None) -> Patched:
    """``resid`` (batch, pos, d_model) of the prompts ``ids`` (batch, pos) with ``condition``
    applied (module docstring); ``none`` changes nothing. ``seeds`` (one per sequence,
    :func:`draw_seed`) seed the ``random`` control's draws (required for it)."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    if ids.shape != resid.shape[:2]:
        raise ValueError(f"ids {tuple(ids.shape)} do not match the residual {tuple(resid.shape)}")
    at = site_entries(ids.to(resid.device), mask, sites, resid.shape[-1])
    if condition == "none":
        return Patched(resid, torch.zeros_like(at))
    out = resid.clone()
    if condition == "random":
        if seeds is None:
            raise ValueError("the random condition needs one seed per sequence (draw_seed)")
        entries = random_entries(at, mask, seeds)
        out[entries] = 0.0
        return Patched(out, entries)
    if condition == "zero":
        out[at] = 0.0
        return Patched(out, at)
    for token, dim, mean in zip(sites.token_ids, sites.dims, sites.means):
        one = at[..., dim] & (ids.to(resid.device) == token)  # (batch, pos)
        out[..., dim] = torch.where(one, torch.tensor(mean, dtype=out.dtype), out[..., dim])
    return Patched(out, at)


class MassivePatch:
    """:func:`patch_residual` as a replace hook on ``sites.hook_name``.

    Before each forward set ``ids`` to the batch's (batch, pos) token ids and ``mask`` to its
    padding mask (None: all real) and ``first`` to the global index of its first sequence --
    :func:`set_batch`. ``n_patched`` / ``n_sequences`` count what it rewrote; sequence i's
    random draw is seeded by :func:`draw_seed` (``seed``, ``draw``, i), so it does not depend on
    batching or on how the sequences are split over processes.
    """

    def __init__(self, sites: MassiveSites, condition: str, seed: int = 0,
                 draw: int = 0) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        self.sites, self.condition = sites, condition
        self.seed, self.draw = seed, draw
        self.ids: torch.Tensor | None = None
        self.mask: torch.Tensor | None = None
        self.first = 0
        self.n_patched = 0
        self.n_sequences = 0

    def set_batch(self, ids: torch.Tensor | None, mask: torch.Tensor | None,
                  first: int = 0) -> None:
        self.ids, self.mask, self.first = ids, mask, first

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        if self.ids is None:
            raise ValueError("MassivePatch needs the batch's token ids: call set_batch(ids, mask) "
                             "before the forward")
        mask = None if self.mask is None else self.mask.to(resid.device)
        seeds = [draw_seed(self.seed, self.draw, self.first + i) for i in range(resid.shape[0])]
        res = patch_residual(resid, self.ids, mask, self.sites, self.condition, seeds)
        self.n_patched += int(res.entries.sum())
        self.n_sequences += resid.shape[0]
        return res.resid
