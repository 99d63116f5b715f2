"""Eager PyTorch references for the SAE encoder (docs/METHODS.md §5).

Each function here has the same signature as its fused Triton twin in `saes.kernels`, and
computes exactly what SAE-Lens' `StandardSAE` / `JumpReLUSAE` / `TopKSAE.encode` compute once
the input is flattened and cast to the weights' dtype:

    sae_in     = x - b_dec                      (skipped when b_dec is None)
    hidden_pre = sae_in @ W_enc + b_enc         # (n, d_sae)
    ReLU:      relu(hidden_pre)
    JumpReLU:  relu(hidden_pre) * [hidden_pre > threshold]
    TopK:      the k largest hidden_pre per row, values passed through ReLU

They are the ground truth for the kernel tests and the `impl="torch"` path of `saes.encode`.

Shapes use the dimension names of docs/GLOSSARY.md.

Tie rule (TopK): the kernels rank by (value, -index), so among equal pre-activations the
smaller feature index wins; `torch.topk` leaves ties unspecified, so tests compare indices
only where values are distinct.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class TopKResult(NamedTuple):
    """The k largest pre-activations of each row, sorted in descending order."""

    values: Tensor  # (n, k) post-ReLU values, dtype of W_enc
    indices: Tensor  # (n, k) int64 feature indices


def hidden_pre(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None) -> Tensor:
    """Pre-activations (x - b_dec) @ W_enc + b_enc, in the dtype of the inputs."""
    sae_in = x if b_dec is None else x - b_dec  # (n, d_in)
    return sae_in @ W_enc + b_enc  # (n, d_sae)


def relu_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None
) -> Tensor:
    """ReLU SAE encode: relu((x - b_dec) @ W_enc + b_enc), shape (n, d_sae)."""
    return torch.relu(hidden_pre(x, W_enc, b_enc, b_dec))


def jumprelu_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, threshold: Tensor
) -> Tensor:
    """JumpReLU SAE encode as SAE-Lens does it: relu(h) * [h > threshold], shape (n, d_sae)."""
    pre = hidden_pre(x, W_enc, b_enc, b_dec)  # (n, d_sae)
    mask = (pre > threshold).to(pre.dtype)
    return torch.relu(pre) * mask


def topk_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, k: int
) -> TopKResult:
    """TopK SAE encode, sparse form: the k largest pre-activations per row (ReLU'd values)."""
    pre = hidden_pre(x, W_enc, b_enc, b_dec)  # (n, d_sae)
    top = torch.topk(pre, k=k, dim=-1, sorted=True)
    return TopKResult(values=torch.relu(top.values), indices=top.indices)


def topk_encode_dense(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, k: int
) -> Tensor:
    """TopK SAE encode, dense form (n, d_sae): zeros except the k selected features."""
    top = topk_encode(x, W_enc, b_enc, b_dec, k)
    return topk_to_dense(top, W_enc.shape[1])


def topk_to_dense(top: TopKResult, d_sae: int) -> Tensor:
    """Scatter a `TopKResult` (n, k) into a dense (n, d_sae) activation matrix."""
    dense = torch.zeros(
        (*top.values.shape[:-1], d_sae), dtype=top.values.dtype, device=top.values.device
    )
    return dense.scatter_(-1, top.indices, top.values)
