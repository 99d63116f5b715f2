"""Next-token cross-entropy: the one implementation every layer uses.

The organism trainer (its loss and the dynamics table's ``loss``), the SAE evaluation (CE loss
clean / spliced / zero-ablated) and the redundancy study (held-out ``lm_loss`` after drops) all
need the same number; it lives here, in the bottom layer, so that none of them keeps a copy.

A target counts when both its input token and the target token are real (``mask`` 1/True). With
right padding -- how every batch in attnlab is padded -- that is the same as "the target is
real", since a real token never follows a padding one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class TokenNLL(NamedTuple):
    """Summed next-token negative log-likelihood and the number of targets it sums over."""

    total: torch.Tensor  # () float64, differentiable when the logits are
    count: int  # targets counted (input and target both real)

    @property
    def mean(self) -> torch.Tensor:
        """Mean NLL per target, () float64 (differentiable: a training loss)."""
        return self.total / self.count


def next_token_nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> TokenNLL:
    """Next-token NLL of ``ids`` under ``logits``, summed in float64 over real targets.

    logits: (batch, pos, d_vocab); ids: (batch, pos) long; mask: (batch, pos) bool or 0/1.
    The log-softmax runs in float32 (half-precision logits are upcast first).
    """
    logp = logits[:, :-1].float().log_softmax(-1)  # (batch, pos-1, d_vocab)
    target = ids[:, 1:].to(logp.device)  # (batch, pos-1)
    nll = -logp.gather(-1, target[..., None])[..., 0]  # (batch, pos-1)
    mask = mask.to(logp.device).bool()
    keep = mask[:, 1:] & mask[:, :-1]  # (batch, pos-1)
    return TokenNLL(nll[keep].double().sum(), int(keep.sum()))


def mean_next_token_nll(logits: torch.Tensor, ids: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real targets, () float64 (the LM training loss)."""
    return next_token_nll(logits, ids, mask).mean
