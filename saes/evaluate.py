"""Evaluate an attention SAE on one layer's hook_z: reconstruction and downstream loss.

    ev = evaluate_sae(loaded, sae, layer, tokens)     # SAEEval; ev.to_frame() is tidy
    with splice(loaded.model, layer, sae): ...        # z := SAE reconstruction of z

Metrics (docs/METHODS.md §5), over real (non-padding) tokens:
- L0: mean number of active features per token;
- explained variance 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 (against the mean, not
  zero);
- dead features (never fired on these tokens) and dense ones (fire on > 10% of them);
- decoders: next-token CE loss clean, with the SAE spliced into hook_z, and with the whole
  attention layer zero-ablated (z := 0 for every head), and
  % CE loss recovered = (L_zero - L_sae) / (L_zero - L_clean);
- encoders (MiniLM): cosine between the mean-pooled sentence embedding with and without the
  SAE spliced in (and with the layer zero-ablated, for scale).

All encoding goes through `saes.encode`.

Under torchrun (``attnlab sae eval --nproc N``, and the evaluation after ``sae train``) each
rank evaluates its contiguous block of the token rows (:func:`probes.distributed.shard_tokens`)
and the numerators and counts above (squared errors, sums of x and x^2, active features, the
per-feature fire counts, summed losses / cosines) are added over the ranks before dividing.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import pandas as pd
import torch
from torch import Tensor

from data.metrics import next_token_nll
from probes.distributed import shard_tokens, sum_over_ranks
from probes.hooks import scoped_hooks
from probes.models import LoadedModel
from probes.tokens import Tokens, batches, forward, pool_embedding
from saes.activations import check_sae_fits, hook_z_name
from saes.encode import encode

DENSE_FRAC = 0.1  # a feature firing on more than this fraction of tokens is "dense"
_UNSET = object()


def decode(sae, acts: Tensor) -> Tensor:
    """SAE-Lens' own decode of (..., d_sae) activations, returned flat as (..., d_in)."""
    lead = acts.shape[:-1]
    flat = acts.reshape(-1, acts.shape[-1]).to(sae.W_dec.dtype)  # (n, d_sae)
    if getattr(sae, "hook_z_reshaping_mode", False):
        saved = sae.__dict__.get("d_head", _UNSET)  # set by SAE-Lens on its first encode
        sae.d_head = 1  # its reshape_fn_out then yields (n, d_in, 1); flattened below
        try:
            out = sae.decode(flat)
        finally:
            if saved is _UNSET:
                del sae.d_head
            else:
                sae.d_head = saved
    else:
        out = sae.decode(flat)
    return out.reshape(*lead, -1)  # (..., d_in)


@torch.no_grad()
def reconstruct(sae, z: Tensor, impl: str = "auto") -> tuple[Tensor, Tensor]:
    """(x_hat shaped like z, acts (..., d_sae)) for hook_z input z (..., head, d_head)."""
    acts = encode(sae, z.flatten(-2), impl=impl).acts  # (..., d_sae)
    z_hat = decode(sae, acts).reshape(z.shape).to(z.dtype)
    return z_hat, acts


@contextlib.contextmanager
def splice(model, layer: int, sae=None, mode: str = "sae", impl="auto"):
    """Replace `blocks.{layer}.attn.hook_z` by its SAE reconstruction (mode "sae") or by
    zeros for all heads of the layer (mode "zero"), a `probes.hooks.scoped_hooks` hook.

    Yields a dict that the "sae" hook refills on every forward pass with what statistics
    need outside the hook: `z`, `z_hat` (batch, pos, head, d_head) and `acts` (batch, pos,
    d_sae)."""
    if mode not in ("sae", "zero"):
        raise ValueError(f"mode must be 'sae' or 'zero', got {mode!r}")
    if mode == "sae" and sae is None:
        raise ValueError("mode 'sae' needs an sae")

    seen: dict[str, Tensor] = {}

    def hook(z: Tensor) -> Tensor:  # z: (batch, pos, head, d_head)
        if mode == "zero":
            return torch.zeros_like(z)
        z_hat, acts = reconstruct(sae, z, impl)
        seen.update(z=z.detach(), z_hat=z_hat, acts=acts)
        return z_hat

    with scoped_hooks(model, {hook_z_name(layer): hook}):
        yield seen


class ReconStats:
    """Running reconstruction statistics over real tokens (float64 sums)."""

    def __init__(self, d_sae: int):
        self.n = 0
        self.sq_err = self.sum_sq = self.l0 = 0.0
        self.sum_x = None
        self.fired = torch.zeros(d_sae, dtype=torch.float64)

    def update(self, x: Tensor, x_hat: Tensor, acts: Tensor, mask: Tensor) -> None:
        keep = mask.bool().reshape(-1).to(x.device)
        x = x.reshape(keep.shape[0], -1)[keep].double()  # (n, d_in)
        x_hat = x_hat.reshape(keep.shape[0], -1)[keep].double()
        active = acts.reshape(keep.shape[0], -1)[keep] != 0  # (n, d_sae)
        self.n += x.shape[0]
        self.sq_err += float(((x - x_hat) ** 2).sum())
        self.sum_sq += float((x**2).sum())
        s = x.sum(0)
        self.sum_x = s if self.sum_x is None else self.sum_x + s
        self.l0 += float(active.sum())
        self.fired += active.sum(0).double().cpu()

    def merge_ranks(self) -> None:
        """Add every rank's sums and counts (one process: unchanged)."""
        if self.sum_x is None:  # this rank saw no real token
            self.sum_x = torch.zeros(1, dtype=torch.float64)
        self.n, self.sq_err, self.sum_sq, self.l0, self.sum_x, self.fired = sum_over_ranks(
            [self.n, self.sq_err, self.sum_sq, self.l0, self.sum_x.cpu(), self.fired])

    def result(self) -> dict[str, float]:
        if self.n == 0:
            raise ValueError("no real tokens were evaluated")
        total_var = self.sum_sq - float((self.sum_x**2).sum()) / self.n  # sum ||x - mean||^2
        freq = self.fired / self.n
        return dict(
            n_tokens=float(self.n), l0=self.l0 / self.n, mse=self.sq_err / self.n,
            explained_variance=1.0 - self.sq_err / total_var,
            dead_frac=float((freq == 0).double().mean()),
            dense_frac=float((freq > DENSE_FRAC).double().mean()),
        )


@dataclass(frozen=True)
class SAEEval:
    """Quality figures of one SAE on one token set (NaN where not applicable)."""

    n_tokens: float
    l0: float
    mse: float
    explained_variance: float
    dead_frac: float
    dense_frac: float
    ce_clean: float = float("nan")
    ce_sae: float = float("nan")
    ce_zero_abl: float = float("nan")
    ce_recovered: float = float("nan")
    cos_sae: float = float("nan")
    cos_zero_abl: float = float("nan")

    def to_frame(self, **ids) -> pd.DataFrame:
        """Tidy table `sae_eval`: one row per metric, plus identifying columns."""
        rows = [dict(ids, metric=k, value=float(v)) for k, v in asdict(self).items()]
        return pd.DataFrame(rows)


@torch.no_grad()
def evaluate_sae(
    loaded: LoadedModel, sae, layer: int, tokens: Tokens, batch_size: int = 32,
    impl: str = "auto",
) -> SAEEval:
    """Reconstruction and downstream metrics of `sae` spliced into `layer` (module docstring)."""
    check_sae_fits(sae, loaded.model, layer)
    stats = ReconStats(int(sae.cfg.d_sae))
    sums = dict(clean=0.0, sae=0.0, zero=0.0, count=0.0)
    for tb in batches(shard_tokens(tokens), batch_size):  # this rank's rows (one process: all)
        mask = tb.attention_mask.to(loaded.cfg.device)
        clean = forward(loaded, tb)
        with splice(loaded.model, layer, sae, "sae", impl) as seen:
            spliced = forward(loaded, tb)
        stats.update(seen["z"], seen["z_hat"], seen["acts"], mask)
        with splice(loaded.model, layer, mode="zero"):
            zeroed = forward(loaded, tb)
        if loaded.kind == "encoder":
            ref = pool_embedding(clean, mask)
            for key, out in (("sae", spliced), ("zero", zeroed)):
                sums[key] += float((pool_embedding(out, mask) * ref).sum())
            sums["count"] += tb.ids.shape[0]
        else:
            for key, out in (("clean", clean), ("sae", spliced), ("zero", zeroed)):
                nll = next_token_nll(out, tb.ids, mask)
                sums[key] += float(nll.total)
            sums["count"] += nll.count
    stats.merge_ranks()
    sums = dict(zip(sums, sum_over_ranks(list(sums.values()))))
    return SAEEval(**stats.result(), **_downstream(loaded.kind, sums))


def _downstream(kind: str, sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["count"], 1.0)
    if kind == "encoder":
        return dict(cos_sae=sums["sae"] / n, cos_zero_abl=sums["zero"] / n)
    clean, sae, zero = sums["clean"] / n, sums["sae"] / n, sums["zero"] / n
    denom = zero - clean
    recovered = (zero - sae) / denom if abs(denom) > 1e-12 else float("nan")
    return dict(ce_clean=clean, ce_sae=sae, ce_zero_abl=zero, ce_recovered=recovered)
