"""`saes.encode`: encode activations with an SAE-Lens SAE through the fastest correct path.

    from saes import encode
    res = encode(sae, z)              # z: (..., d_in), or (..., head, d_head) for hook_z SAEs
    res.acts                          # (..., d_sae) dense feature activations (None if dense=False)
    res.topk_values, res.topk_indices # (..., k) for TopK SAEs, sorted descending, else None
    res.impl, res.reason              # which path ran ("triton" | "torch" | "sae_lens") and why

Why not just `sae.encode`: SAE-Lens computes the dense pre-activation matrix and then runs
bias, threshold and `torch.topk` as separate passes; the Triton kernels in
`saes.kernels` fuse them. The math is SAE-Lens' own (see `saes.reference`), and SAE
configurations the kernels do not cover (input normalisation, decoder-norm rescaling, hooks
attached to the SAE, other architectures) are passed to `sae.encode` itself, reason recorded.

Backends (STYLE.md point 10): `impl="auto"` picks "triton" when x is on CUDA and Triton is
installed, else "torch" (the eager reference). `impl="triton"` on CPU runs only under Triton's
interpreter (`TRITON_INTERPRET=1` set before triton is first imported); otherwise it
raises. Encoding is inference-only: it runs under `torch.no_grad()`.

NaN/inf in x: by default (`check_finite=None`) checked on CPU, where the check is cheap, and
refused with a ValueError. On CUDA it is not checked by default, because the check costs a
device synchronisation: there NaN/inf flow through as in SAE-Lens' own encode, giving NaN
feature activations and, for TopK SAEs, arbitrary top-k indices (`torch.topk` orders NaN
unpredictably). Pass `check_finite=True` to check on any device, `False` to skip the check.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import NamedTuple

import torch
from torch import Tensor

from saes import reference

IMPLS = ("auto", "triton", "torch")


class FusedSpec(NamedTuple):
    """What the fused path needs from an SAE, or why it cannot take it."""

    kind: str  # "relu" | "jumprelu" | "topk" | "other"
    W_enc: Tensor  # (d_in, d_sae)
    b_enc: Tensor | None  # (d_sae,)
    b_dec: Tensor | None  # (d_in,); None when cfg.apply_b_dec_to_input is False
    threshold: Tensor | None  # (d_sae,) JumpReLU only
    k: int  # TopK only (0 otherwise)
    unfused_reason: str | None  # None: fusable; else why sae.encode runs instead


def _architecture_kinds() -> dict[type, str]:
    """Exact SAE-Lens classes whose encode is the math of `saes.reference` (not subclasses:
    BatchTopK etc. subclass TopK but encode differently; JumpReLUTrainingSAE computes
    h * [h > threshold] without the ReLU, so it goes to sae.encode)."""
    import sae_lens

    return {
        sae_lens.StandardSAE: "relu",
        sae_lens.StandardTrainingSAE: "relu",
        sae_lens.JumpReLUSAE: "jumprelu",
        sae_lens.TopKSAE: "topk",
        sae_lens.TopKTrainingSAE: "topk",
    }


def _unfused_reason(sae, kind: str) -> str | None:
    """Why this SAE's encode is not the fused math (None when it is)."""
    if kind == "other":
        arch = sae.cfg.architecture()
        return f"no fused kernel for {type(sae).__name__} (architecture {arch!r})"
    if sae.cfg.normalize_activations != "none":
        return f"input normalisation {sae.cfg.normalize_activations!r} is not fused"
    if kind == "topk" and getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        return "rescale_acts_by_decoder_norm is not fused"
    points = (sae.hook_sae_input, sae.hook_sae_acts_pre, sae.hook_sae_acts_post)
    if any(len(p._forward_hooks) or len(p._backward_hooks) for p in points):
        return "hooks are attached to the SAE's hook points; the fused path would skip them"
    return None


def fused_spec(sae) -> FusedSpec:
    """Read the encoder weights and architecture of an SAE-Lens SAE."""
    import sae_lens

    if not isinstance(sae, sae_lens.SAE):
        raise TypeError(f"sae must be a sae_lens.SAE, got {type(sae).__name__}")
    kind = _architecture_kinds().get(type(sae), "other")
    apply_b_dec = bool(sae.cfg.apply_b_dec_to_input)
    return FusedSpec(
        kind=kind,
        W_enc=sae.W_enc.detach(),
        b_enc=sae.b_enc.detach() if hasattr(sae, "b_enc") else None,
        b_dec=sae.b_dec.detach() if apply_b_dec else None,
        threshold=sae.threshold.detach() if kind == "jumprelu" else None,
        k=int(sae.cfg.k) if kind == "topk" else 0,
        unfused_reason=_unfused_reason(sae, kind),
    )


def sae_lens_encode(sae, x: Tensor, spec: FusedSpec) -> tuple:
    """SAE-Lens' own encode on x as given: (acts (..., d_sae), TopKResult | None). x keeps
    its shape so that state SAE-Lens keeps for decode (layer_norm statistics) fits it."""
    if getattr(sae, "hook_z_reshaping_mode", False) and x.shape[-1] == sae.cfg.d_in:
        # SAE-Lens flattens the last two dims of hook_z input: give it (..., 1, d_in), then
        # undo the d_head it records on first use, so the SAE is left as we found it.
        saved = dict(sae.__dict__)  # reshape_fn_in and d_head are plain attributes
        try:
            acts = sae.encode(x.unsqueeze(-2))
        finally:
            for name in ("reshape_fn_in", "d_head"):
                if name in saved:
                    sae.__dict__[name] = saved[name]
                else:
                    sae.__dict__.pop(name, None)
    else:
        acts = sae.encode(x)
    acts = acts.to_dense() if acts.is_sparse else acts  # (..., d_sae)
    if spec.kind != "topk":
        return acts, None
    top = torch.topk(acts, k=spec.k, dim=-1, sorted=True)
    return acts, reference.TopKResult(top.values, top.indices)


class EncodeResult(NamedTuple):
    """Feature activations of one `encode` call, dense and/or sparse, plus the path taken."""

    acts: Tensor | None  # (..., d_sae) dense activations; None when dense=False (TopK)
    topk_values: Tensor | None  # (..., k) TopK SAEs only: post-ReLU values, descending
    topk_indices: Tensor | None  # (..., k) TopK SAEs only: int64 feature indices
    impl: str  # "triton" | "torch" | "sae_lens"
    reason: str  # why that path ran


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    """True when Triton is installed (checked once per process, without importing it: Triton
    decides at import whether to use its interpreter, so importing it here could fix that
    choice before a test sets TRITON_INTERPRET)."""
    return importlib.util.find_spec("triton") is not None


def resolve_impl(impl: str, device: torch.device) -> tuple[str, str]:
    """Resolve "auto" | "triton" | "torch" for tensors on `device`: (impl, reason)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "torch":
        return "torch", "impl='torch' requested"
    if impl == "auto":
        if device.type != "cuda":
            return "torch", f"auto: tensors on {device.type}, the Triton kernels need CUDA"
        if not triton_importable():
            return "torch", "auto: CUDA but no Triton (pip install attnlab[gpu])"
        return "triton", "auto: CUDA device and Triton available"
    if not triton_importable():
        raise RuntimeError("impl='triton' but Triton is not installed: pip install attnlab[gpu]")
    from saes.kernels import interpreter_enabled

    if device.type == "cuda":
        return "triton", "impl='triton' requested"
    if device.type == "cpu" and interpreter_enabled():
        return "triton", "impl='triton' on CPU through Triton's interpreter (TRITON_INTERPRET=1)"
    raise RuntimeError(
        f"impl='triton' needs CUDA tensors (got {device.type}). Use impl='auto' or 'torch', or "
        "set TRITON_INTERPRET=1 before triton is first imported to run Triton's (slow) CPU "
        "interpreter."
    )


def flatten_input(x: Tensor, d_in: int, hook_z: bool) -> tuple[Tensor, tuple[int, ...]]:
    """(n, d_in) view of x and the leading shape to restore; accepts hook_z-shaped input."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.ndim >= 1 and x.shape[-1] == d_in:
        return x.reshape(-1, d_in), tuple(x.shape[:-1])  # (n, d_in)
    if hook_z and x.ndim >= 2 and x.shape[-2] * x.shape[-1] == d_in:
        return x.reshape(-1, d_in), tuple(x.shape[:-2])  # (..., head, d_head) -> (n, d_in)
    want = "(..., d_in) or (..., n_heads, d_head)" if hook_z else "(..., d_in)"
    raise ValueError(f"x has shape {tuple(x.shape)}; this SAE expects {want} with d_in={d_in}")


def _run_fused(spec: FusedSpec, x2: Tensor, impl: str, dense: bool) -> tuple:
    """Run the fused math on flat x2 (n, d_in): (acts | None, TopKResult | None)."""
    if impl == "triton":
        from saes import kernels as backend
    else:
        backend = reference
    args = (x2, spec.W_enc, spec.b_enc, spec.b_dec)
    if spec.kind == "relu":
        return backend.relu_encode(*args), None
    if spec.kind == "jumprelu":
        return backend.jumprelu_encode(*args, spec.threshold), None
    top = backend.topk_encode(*args, spec.k)
    acts = reference.topk_to_dense(top, spec.W_enc.shape[1]) if dense else None
    return acts, top


@torch.no_grad()
def encode(
    sae, x: Tensor, impl: str = "auto", dense: bool = True, check_finite: bool | None = None
) -> EncodeResult:
    """Encode x with an SAE-Lens SAE; equals `sae.encode(x)` (see module docstring).

    `dense=False` (TopK SAEs only) skips the (..., d_sae) matrix and returns only the top-k.
    `check_finite`: refuse NaN/inf in x; None (default) checks on CPU only (module docstring).
    """
    spec = fused_spec(sae)
    d_in = int(sae.cfg.d_in)
    x2, lead = flatten_input(x, d_in, hook_z=sae.cfg.reshape_activations == "hook_z")
    if check_finite is None:
        check_finite = x2.device.type == "cpu"
    if check_finite and not bool(torch.isfinite(x2).all()):
        raise ValueError("x contains NaN or inf; clean the activations before encoding "
                         "(check_finite=False encodes them anyway, giving NaN features)")
    if not dense and spec.kind != "topk":
        raise ValueError(f"dense=False needs a TopK SAE; this one is {spec.kind!r}")
    if spec.unfused_reason is not None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        acts, top = sae_lens_encode(sae, x, spec)
        return _package(acts if dense else None, top, lead, "sae_lens", spec.unfused_reason)
    if x2.device != spec.W_enc.device:
        raise ValueError(f"x is on {x2.device} but the SAE is on {spec.W_enc.device}: move one")
    chosen, reason = resolve_impl(impl, x2.device)
    x2 = x2.to(spec.W_enc.dtype).contiguous()  # SAE-Lens casts the input to the SAE dtype
    acts, top = _run_fused(spec, x2, chosen, dense)
    return _package(acts, top, lead, chosen, reason)


def _package(acts, top, lead: tuple[int, ...], impl: str, reason: str) -> EncodeResult:
    """Restore the leading shape of x on every output."""
    acts = None if acts is None else acts.reshape(*lead, acts.shape[-1])
    if top is None:
        return EncodeResult(acts, None, None, impl, reason)
    values = top.values.reshape(*lead, top.values.shape[-1])
    indices = top.indices.reshape(*lead, top.indices.shape[-1])
    return EncodeResult(acts, values, indices, impl, reason)
