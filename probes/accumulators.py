"""Accumulators: reduce activations batch by batch, so memory does not grow with the prompts.

An accumulator is any object with ``update(tensor, mask, **ctx)`` and ``result() ->
DataFrame`` (:class:`Accumulator`); :func:`probes.capture.capture` feeds it from a hook.
Here: the protocol, masked-row selection, exact streaming moments (Chan et al.'s parallel
update, in float64) and a bottom-k reservoir for streaming quantiles. Both merge with
another instance's ``state()`` (``merge_state``), which is how ranks of a torchrun job
combine their statistics (:mod:`probes.distributed`). The statistics themselves (entropy,
massive activations, norms) live in their own modules.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import pandas as pd
import torch


@runtime_checkable
class Accumulator(Protocol):
    """What :func:`probes.capture.capture` needs from an accumulator."""

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        """Reduce one batch; ``mask`` (batch, pos) bool is True at real tokens (None: all)."""

    def result(self) -> pd.DataFrame:
        """The statistics so far, as a tidy long-format DataFrame."""


class HookPlan(NamedTuple):
    """What a probe needs from :func:`probes.capture.capture`: hooks, and what to read after."""

    hooks: dict[str, Any]  # hook name -> accumulator (one accumulator may serve several hooks)
    accumulators: list[Any]  # the distinct accumulators, in output order

    def table(self) -> pd.DataFrame:
        """All accumulators' results, concatenated."""
        return pd.concat([a.result() for a in self.accumulators], ignore_index=True)


def real_rows(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, pos, ...) -> (n, ...): the rows at real (unpadded) tokens."""
    if mask is None:
        return tensor.reshape(-1, *tensor.shape[2:])
    if mask.shape != tensor.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match the (batch, pos) of an "
                         f"activation of shape {tuple(tensor.shape)}")
    return tensor[mask.bool()]


class Moments(NamedTuple):
    """Per-feature streaming statistics (float64 tensors of the feature shape)."""

    count: int
    mean: torch.Tensor
    std: torch.Tensor  # population std (ddof=0)
    min: torch.Tensor
    max: torch.Tensor


class RunningMoments:
    """Exact per-feature count/mean/std/min/max over real tokens, in O(features) memory.

    Batches are merged with the parallel variance formula (Chan, Golub & LeVeque 1979) in
    float64, so the result equals a one-shot computation up to rounding. ``transform``
    maps the real-token rows (n, ...) to what is accumulated (e.g. a norm per head).
    """

    def __init__(self, transform=None, name: str = "moments"):
        self.transform = transform
        self.name = name
        self.count = 0
        self._mean = self._m2 = self._min = self._max = None

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        rows = real_rows(tensor, mask)  # (n, ...)
        if self.transform is not None:
            rows = self.transform(rows)
        self.add(rows)

    def add(self, rows: torch.Tensor) -> None:
        """Merge rows (n, ...) directly (no mask)."""
        n = rows.shape[0]
        if n == 0:
            return
        x = rows.detach().to(torch.float64)
        b_mean = x.mean(0)
        self.merge_state((n, b_mean, ((x - b_mean) ** 2).sum(0), x.amin(0), x.amax(0)))

    def state(self) -> tuple | None:
        """(count, mean, M2, min, max) float64 tensors on CPU, or None before any row."""
        if self._mean is None:
            return None
        return (self.count, *(t.cpu() for t in (self._mean, self._m2, self._min, self._max)))

    def clear(self) -> None:
        """Forget every row (keeps ``transform`` and ``name``)."""
        self.count = 0
        self._mean = self._m2 = self._min = self._max = None

    def merge_state(self, state: tuple | None) -> None:
        """Merge another accumulator's :meth:`state` (e.g. another rank's): Chan et al.'s
        parallel update of count/mean/M2, elementwise min/max; order-independent up to
        rounding."""
        if state is None:
            return
        n, mean, m2, lo, hi = state
        dev = self._mean.device if self._mean is not None else mean.device
        mean, m2, lo, hi = (t.to(dev, torch.float64) for t in (mean, m2, lo, hi))
        if self._mean is None:
            self.count, self._mean, self._m2, self._min, self._max = n, mean, m2, lo, hi
            return
        total = self.count + n
        delta = mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + m2 + delta**2 * (self.count * n / total)
        self._min, self._max = torch.minimum(self._min, lo), torch.maximum(self._max, hi)
        self.count = total

    def moments(self) -> Moments:
        if self._mean is None:
            raise ValueError(f"{self.name}: no real tokens were seen; feed at least one batch")
        std = (self._m2 / self.count).clamp_min(0).sqrt()
        return Moments(self.count, self._mean, std, self._min, self._max)

    def result(self) -> pd.DataFrame:
        """Columns: feature (flat index), stat (count | mean | std | min | max), value."""
        m = self.moments()
        flat = {"mean": m.mean, "std": m.std, "min": m.min, "max": m.max}
        n_feat = m.mean.numel()
        frames = [pd.DataFrame({"feature": range(n_feat), "stat": "count",
                                "value": float(m.count)})]
        for stat, t in flat.items():
            frames.append(pd.DataFrame({"feature": range(n_feat), "stat": stat,
                                        "value": t.reshape(-1).cpu().numpy()}))
        return pd.concat(frames, ignore_index=True)


class Reservoir:
    """A uniform random sample of at most ``k`` values per group, streamed (bottom-k sampling).

    Every value gets an i.i.d. uniform key from a seeded generator; the reservoir keeps the
    ``k`` smallest keys, which is a uniform sample without replacement of everything seen.
    While fewer than ``k`` values were seen per group the sample is exact, so quantiles are
    exact for small runs and within O(1/sqrt(k)) in rank for large ones.
    """

    def __init__(self, n_groups: int, k: int = 4096, seed: int = 0):
        if k < 1 or n_groups < 1:
            raise ValueError(f"Reservoir needs k >= 1 and n_groups >= 1, got {k}, {n_groups}")
        self.k, self.n_groups = k, n_groups
        self._gen = torch.Generator().manual_seed(seed)
        self._keys = torch.empty(n_groups, 0, dtype=torch.float64)
        self._vals = torch.empty(n_groups, 0, dtype=torch.float64)

    def add(self, values: torch.Tensor) -> None:
        """Add values (group, n) -- one row of n new values per group."""
        if values.ndim != 2 or values.shape[0] != self.n_groups:
            raise ValueError(f"expected values of shape ({self.n_groups}, n), "
                             f"got {tuple(values.shape)}")
        vals = values.detach().to("cpu", torch.float64)
        self.merge_state((torch.rand(vals.shape, generator=self._gen, dtype=torch.float64), vals))

    def state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values), each (group, <= k) float64: what :meth:`merge_state` needs."""
        return self._keys, self._vals

    def clear(self) -> None:
        """Forget the sample (the key generator goes on where it was)."""
        self._keys = torch.empty(self.n_groups, 0, dtype=torch.float64)
        self._vals = torch.empty(self.n_groups, 0, dtype=torch.float64)

    def merge_state(self, state: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Merge another reservoir's :meth:`state` (another rank's stream).

        Bottom-k sketches are mergeable: the k smallest keys of the union of two bottom-k
        samples are the bottom-k sample of the union of the two streams, so the result is a
        uniform sample of everything both saw (exact while the total fits in k). The streams
        must have drawn independent keys (a different ``seed`` per rank).
        """
        keys, vals = state
        if keys.shape[0] != self.n_groups or keys.shape != vals.shape:
            raise ValueError(f"cannot merge a reservoir of {tuple(keys.shape)} keys into one of "
                             f"{self.n_groups} groups")
        keys = torch.cat([self._keys, keys.to(torch.float64)], 1)
        vals = torch.cat([self._vals, vals.to(torch.float64)], 1)
        if keys.shape[1] > self.k:
            keys, idx = torch.topk(keys, self.k, dim=1, largest=False, sorted=False)
            vals = torch.gather(vals, 1, idx)
        self._keys, self._vals = keys, vals

    def quantiles(self, qs: torch.Tensor | list[float]) -> torch.Tensor:
        """(group, quantile) quantiles (linear interpolation) of each group's sample."""
        qs = torch.as_tensor(qs, dtype=torch.float64)
        if self._vals.shape[1] == 0:
            raise ValueError("Reservoir is empty: add values first")
        return torch.quantile(self._vals, qs, dim=1).T
