"""Frozen configs of attention-SAE training (one per component, validated on creation).

`SAETrainConfig` says what SAE to train and how long; `ActivationConfig` says which tokens
feed it. Device and dtype are not config: the SAE follows the model's device, in float32.

    cfg = SAETrainConfig(arch="topk", d_sae=1536, k=32, total_tokens=2_000_000)
    cfg.sae_lens_config(d_in=192, hook_name="blocks.1.attn.hook_z", model_name="organism")
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

ARCHS = ("topk", "jumprelu", "standard")


@dataclass(frozen=True)
class SAETrainConfig:
    """One SAE training run on one layer's `hook_z` (Kissane et al. 2024 recipe by default)."""

    arch: str = "topk"  # "topk" | "jumprelu" | "standard" (ReLU + L1)
    d_sae: int = 2048  # dictionary size (Kissane et al. use 32 x d_in on GPT-2 small)
    k: int = 32  # TopK: active features per token
    l1_coefficient: float = 1.0  # standard: weight of the L1 penalty on f * ||W_dec row||
    l0_coefficient: float = 1.0  # jumprelu: weight of the (step) L0 penalty
    jumprelu_init_threshold: float = 0.01  # jumprelu: initial threshold (moves ~lr per step)
    jumprelu_bandwidth: float = 0.05  # jumprelu: straight-through estimator bandwidth
    lr: float = 1.2e-3  # Adam learning rate (Kissane et al.: 1.2e-3)
    adam_beta1: float = 0.9  # Adam beta1
    adam_beta2: float = 0.99  # Adam beta2 (Kissane et al.: 0.99)
    batch_tokens: int = 1024  # tokens per optimiser step (Kissane et al.: 4096 on a GPU)
    total_tokens: int = 1_000_000  # tokens seen in training (epochs over the buffer)
    lr_warm_up_steps: int = 0  # linear warm-up steps
    lr_decay_frac: float = 0.2  # final fraction of the steps with linear decay to zero
    sparsity_warm_up_steps: int = 0  # steps over which the L1/L0 coefficient ramps up
    dead_feature_window: int = 500  # steps without firing after which a feature counts dead
    n_checkpoints: int = 4  # evenly spaced resumable checkpoints during the run
    seed: int = 0  # seeds the initial weights and the batch order

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        for name in ("d_sae", "k", "batch_tokens", "total_tokens", "dead_feature_window"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.arch == "topk" and self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds d_sae={self.d_sae}: choose k <= d_sae")
        if self.total_tokens < self.batch_tokens:
            raise ValueError(
                f"total_tokens={self.total_tokens} < batch_tokens={self.batch_tokens}: "
                "train for at least one batch"
            )
        floats = ("lr", "l1_coefficient", "l0_coefficient", "jumprelu_init_threshold",
                  "jumprelu_bandwidth", "adam_beta1", "adam_beta2", "lr_decay_frac")
        bad = [f"{name}={getattr(self, name)}" for name in floats
               if not math.isfinite(getattr(self, name))]
        if bad:
            raise ValueError(f"{', '.join(bad)}: must be finite numbers")
        if self.lr <= 0 or min(self.l1_coefficient, self.l0_coefficient) < 0:
            raise ValueError("lr must be > 0 and sparsity coefficients >= 0")
        if min(self.jumprelu_init_threshold, self.jumprelu_bandwidth) <= 0:
            raise ValueError("jumprelu_init_threshold and jumprelu_bandwidth must be > 0")
        if not (0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1):
            raise ValueError("Adam betas must lie in [0, 1)")
        if not 0 <= self.lr_decay_frac <= 1:
            raise ValueError(f"lr_decay_frac must lie in [0, 1], got {self.lr_decay_frac}")
        if min(self.lr_warm_up_steps, self.sparsity_warm_up_steps, self.n_checkpoints) < 0:
            raise ValueError("warm-up steps and n_checkpoints must be >= 0")

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sae_lens_config(self, d_in: int, hook_name: str, model_name: str):
        """The SAE-Lens training config of this run (hook_z reshaping on, metadata filled)."""
        import sae_lens

        common = dict(
            d_in=int(d_in), d_sae=self.d_sae, reshape_activations="hook_z", dtype="float32",
        )
        if self.arch == "topk":
            cfg = sae_lens.TopKTrainingSAEConfig(k=self.k, **common)
        elif self.arch == "jumprelu":
            cfg = sae_lens.JumpReLUTrainingSAEConfig(
                l0_coefficient=self.l0_coefficient, l0_warm_up_steps=self.sparsity_warm_up_steps,
                jumprelu_init_threshold=self.jumprelu_init_threshold,
                jumprelu_bandwidth=self.jumprelu_bandwidth, **common,
            )
        else:
            cfg = sae_lens.StandardTrainingSAEConfig(
                l1_coefficient=self.l1_coefficient, l1_warm_up_steps=self.sparsity_warm_up_steps,
                **common,
            )
        cfg.metadata.hook_name = hook_name
        cfg.metadata.model_name = model_name
        return cfg


@dataclass(frozen=True)
class ActivationConfig:
    """Which tokens feed the SAE: how many, in what batches, from which corpus seed."""

    n_tokens: int = 200_000  # activations held in the shuffling buffer (tokens, not prompts)
    prompt_batch: int = 64  # prompts per model forward pass
    seed: int = 0  # seeds the corpus draw (organism) or the sentence order (minilm)
    max_len: int | None = None  # truncate prompts longer than this (None: the model's n_ctx)

    def __post_init__(self) -> None:
        if self.n_tokens < 1 or self.prompt_batch < 1:
            raise ValueError("n_tokens and prompt_batch must be positive")
        if self.max_len is not None and self.max_len < 2:
            raise ValueError(f"max_len must be >= 2 or None, got {self.max_len}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
