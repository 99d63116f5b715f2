"""Fused Triton SAE encode kernels: GEMM with bias + ReLU / JumpReLU / running top-k epilogues.

Public wrappers (same signatures as `saes.reference`, which is their ground truth):

    relu_encode(x, W_enc, b_enc, b_dec)                -> (n, d_sae)
    jumprelu_encode(x, W_enc, b_enc, b_dec, threshold) -> (n, d_sae)
    topk_encode(x, W_enc, b_enc, b_dec, k)             -> TopKResult((n, k), (n, k))
    topk_encode_dense(x, W_enc, b_enc, b_dec, k)       -> (n, d_sae)

Shapes use the dimension names of docs/GLOSSARY.md (kernel code: M = n, K = d_in, N = d_sae).

Why fused: eager encode writes the (n, d_sae) pre-activation matrix, reads it
back for the bias/threshold and again for `torch.topk`. Here (x - b_dec) is formed while the x
tile is loaded, the GEMM accumulates in fp32, and the epilogue applies bias and activation
before one store. TopK never stores the dense matrix: each program owns BLOCK_M rows and a
contiguous range of N-tiles (a "split"), keeps a running top-KT per row in registers and writes
(n, split, kt) candidates; `torch.topk` over those few candidates finishes the job.

Running top-k: a pre-activation v of feature j is packed into one int64 key,
    key = (ordered_int32(v) << 32) | (2**31 - 1 - j),
so keys are distinct, rank by value and, among equal values, put the smaller index first (the
tie rule), and values decode bit-exact. Per tile, only keys above the row's current KT-th best
(`tau`) can enter; they are inserted largest first, each replacing the row minimum. After the
first tile of a split that is a few keys per row (about KT * BLOCK_N / columns seen), so the
epilogue is a short loop instead of a sort of the whole tile (`tl.topk` is a bitonic network
over every element, and 10-20x slower under the interpreter). k with KT > MAX_FUSED_KT (256)
uses the dense kernel for pre-activations and `torch.topk`.

Interpreter: Triton decides at `import triton` whether `@triton.jit` functions (its own
`tl.max`, `tl.cdiv`... included) are interpreted, so `TRITON_INTERPRET=1` must be set before
triton is first imported; `_build` raises a clear error otherwise. The interpreter's `tl.dot`
multiplies bf16's raw uint16 storage, so under it bf16 tiles are upcast to fp32 first.
Numerics: fp32 accumulation, epilogue in fp32, one rounding to the input dtype at the store;
fp32 inputs use IEEE fp32 dot products (no TF32), like torch's default matmul. Everything is
inference-only (no autograd).
"""

from __future__ import annotations

import contextlib
import functools
from types import SimpleNamespace

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from saes.kernels_configs import MAX_FUSED_KT, dense_configs, prune_topk_configs, topk_configs
from saes.reference import TopKResult, topk_to_dense

ACT_NONE, ACT_RELU, ACT_JUMPRELU = 0, 1, 2
KEY_MIN = tl.constexpr(-(2**63))  # below every real key (padded columns, sentinels)
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def interpreter_enabled() -> bool:
    """True when Triton's CPU interpreter is on (TRITON_INTERPRET=1), read at call time."""
    return bool(triton.knobs.runtime.interpret)


@triton.jit
def _round_bf16(v):
    """fp32 -> fp32 holding v rounded to the nearest-even bf16 (so a later cast is exact)."""
    bits = v.to(tl.int32, bitcast=True)
    bits = (bits + (0x7FFF + ((bits >> 16) & 1))) & -65536
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _tile_preact(
    x_ptr, w_ptr, b_enc_ptr, b_dec_ptr, rm, rn, M, N, K,
    stride_xm, stride_xk, stride_wk, stride_wn,
    HAS_B_DEC: tl.constexpr, DOT_FP32: tl.constexpr, EMULATE_BF16: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """fp32 pre-activations (x[rm] - b_dec) @ W_enc[:, rn] + b_enc[rn]: (BLOCK_M, BLOCK_N)."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
        a = tl.load(x_ptr + rm.to(tl.int64)[:, None] * stride_xm + rk[None, :] * stride_xk,
                    mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)  # (BLOCK_M, BLOCK_K)
        if HAS_B_DEC:  # x - b_dec, rounded to the input dtype exactly as eager does
            bd = tl.load(b_dec_ptr + rk, mask=rk < K, other=0.0)
            diff = a.to(tl.float32) - bd.to(tl.float32)[None, :]
            if EMULATE_BF16:
                diff = _round_bf16(diff)
            a = diff.to(a.dtype)
        b = tl.load(w_ptr + rk.to(tl.int64)[:, None] * stride_wk + rn[None, :] * stride_wn,
                    mask=(rk[:, None] < K) & (rn[None, :] < N), other=0.0)  # (BLOCK_K, BLOCK_N)
        if DOT_FP32:  # fp32 inputs (IEEE, no TF32), or bf16 emulated under the interpreter
            acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, b, acc)
    return acc + tl.load(b_enc_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _dense_kernel(
    x_ptr, w_ptr, b_enc_ptr, b_dec_ptr, thr_ptr, out_ptr,
    M, N, K, stride_xm, stride_xk, stride_wk, stride_wn, M_BUCKET,
    ACT: tl.constexpr, HAS_B_DEC: tl.constexpr, DOT_FP32: tl.constexpr,
    EMULATE_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):  # fmt: skip
    """out[m, n] = act(pre-activation[m, n]) for one (BLOCK_M, BLOCK_N) tile."""
    # Grouped launch order (Triton matmul tutorial): neighbours share W tiles in L2.
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    group = GROUP_M * tl.cdiv(N, BLOCK_N)
    first_m = (pid // group) * GROUP_M
    group_m = min(num_pid_m - first_m, GROUP_M)
    rm = (first_m + ((pid % group) % group_m)) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = ((pid % group) // group_m) * BLOCK_N + tl.arange(0, BLOCK_N)
    h = _tile_preact(x_ptr, w_ptr, b_enc_ptr, b_dec_ptr, rm, rn, M, N, K,
                     stride_xm, stride_xk, stride_wk, stride_wn,
                     HAS_B_DEC, DOT_FP32, EMULATE_BF16, BLOCK_M, BLOCK_N, BLOCK_K)
    if ACT == 1:
        h = tl.maximum(h, 0.0)
    if ACT == 2:  # SAE-Lens JumpReLU: relu(h) * [h > threshold]
        thr = tl.load(thr_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)
        h = tl.where(h > thr[None, :], tl.maximum(h, 0.0), 0.0)
    if EMULATE_BF16:
        h = _round_bf16(h)
    out = out_ptr + rm.to(tl.int64)[:, None] * N + rn[None, :]
    tl.store(out, h.to(out_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _topk_kernel(
    x_ptr, w_ptr, b_enc_ptr, b_dec_ptr, cand_ptr,
    M, N, K, stride_xm, stride_xk, stride_wk, stride_wn, M_BUCKET, SPLIT,
    KT: tl.constexpr, HAS_B_DEC: tl.constexpr, DOT_FP32: tl.constexpr,
    EMULATE_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):  # fmt: skip
    """cand[m, split, :] = the KT largest keys of row m over this split's N-tiles."""
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    n_tiles = tl.cdiv(N, BLOCK_N)
    per_split = tl.cdiv(n_tiles, SPLIT)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    # Running top-KT keys per row, seeded with distinct sentinels below every real key so
    # that exactly one slot holds the row minimum `tau`.
    run = tl.zeros((BLOCK_M, KT), tl.int64) + (tl.arange(0, KT).to(tl.int64) + KEY_MIN)[None, :]
    tau = tl.min(run, axis=1)  # (BLOCK_M,)
    for t in range(pid_s * per_split, tl.minimum(n_tiles, (pid_s + 1) * per_split)):
        rn = t * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
        h = _tile_preact(x_ptr, w_ptr, b_enc_ptr, b_dec_ptr, rm, rn, M, N, K,
                         stride_xm, stride_xk, stride_wk, stride_wn,
                         HAS_B_DEC, DOT_FP32, EMULATE_BF16, BLOCK_M, BLOCK_N, BLOCK_K)
        bits = h.to(tl.int32, bitcast=True)  # order-preserving int32 view of fp32:
        ordered = tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)  # negatives flip magnitude
        keys = (ordered.to(tl.int64) << 32) | (0x7FFFFFFF - rn).to(tl.int64)[None, :]
        keys = tl.where(rn[None, :] < N, keys, KEY_MIN)  # (BLOCK_M, BLOCK_N)
        # Threshold-gated insertion: only keys above the row's current KT-th best can enter;
        # after the first tile of a split that is a handful per row, so the loop is short.
        live = keys > tau[:, None]
        best = tl.max(tl.where(live, keys, KEY_MIN), axis=1)  # (BLOCK_M,) KEY_MIN: none live
        while tl.max(best, axis=0) > KEY_MIN:
            swap = (run == tau[:, None]) & (best > tau)[:, None]  # the row minimum's slot
            run = tl.where(swap, best[:, None], run)
            tau = tl.min(run, axis=1)
            live = live & (keys > tau[:, None]) & (keys != best[:, None])
            best = tl.max(tl.where(live, keys, KEY_MIN), axis=1)
    out = cand_ptr + rm.to(tl.int64)[:, None] * (SPLIT * KT) + pid_s * KT
    tl.store(out + tl.arange(0, KT)[None, :], run, mask=rm[:, None] < M)


@functools.lru_cache(maxsize=2)
def _build(interpret: bool) -> SimpleNamespace:
    """Autotune the kernels once per mode (GPU or interpreter), at first launch."""
    interpreted = [isinstance(f, InterpretedFunction) for f in (tl.cdiv, _dense_kernel)]
    if interpreted != [interpret, interpret]:
        raise RuntimeError(
            "TRITON_INTERPRET changed after triton was imported; Triton decides at import "
            "whether to interpret, so set TRITON_INTERPRET=1 before the first `import triton`"
        )
    dense = triton.autotune(configs=dense_configs(interpret), key=["M_BUCKET", "N", "K", "ACT"])(
        _dense_kernel
    )
    topk = triton.autotune(
        configs=topk_configs(interpret),
        key=["M_BUCKET", "N", "K", "KT"],
        prune_configs_by={"early_config_prune": functools.partial(prune_topk_configs, interpret)},
    )(_topk_kernel)
    return SimpleNamespace(dense=dense, topk=topk)


def _numerics(x: Tensor, interpret: bool) -> dict[str, bool]:
    """DOT_FP32: fp32 dot products (fp32 inputs). EMULATE_BF16: bf16 under the interpreter,
    whose `tl.dot` multiplies bf16's raw uint16 storage and whose fp32->bf16 casts truncate
    (triton 3.x); there bf16 tiles are upcast (bf16 x bf16 products are exact in fp32, as on
    tensor cores) and values are rounded to nearest-even before each downcast, as on GPUs."""
    emulate = interpret and x.dtype == torch.bfloat16
    return {"DOT_FP32": x.dtype == torch.float32 or emulate, "EMULATE_BF16": emulate}


def _check_inputs(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None,
                  threshold: Tensor | None = None, k: int | None = None) -> None:  # fmt: skip
    """Shapes, dtypes, devices and contiguity, with errors that say what to do."""
    if x.ndim != 2 or W_enc.ndim != 2 or x.shape[1] != W_enc.shape[0]:
        raise ValueError(
            f"need x (n, d_in) and W_enc (d_in, d_sae); got {tuple(x.shape)} and "
            f"{tuple(W_enc.shape)} (flatten leading dims first, as saes.encode does)"
        )
    d_in, d_sae = W_enc.shape
    vectors = {"b_enc": (b_enc, d_sae), "b_dec": (b_dec, d_in), "threshold": (threshold, d_sae)}
    for name, (vec, size) in vectors.items():
        if vec is None:
            continue
        if vec.shape != (size,) or vec.stride(0) != 1:
            raise ValueError(f"{name} must be a contiguous ({size},) vector: {tuple(vec.shape)}")
    tensors = [x, W_enc] + [v for v, _ in vectors.values() if v is not None]
    if x.dtype not in SUPPORTED_DTYPES or any(t.dtype != x.dtype for t in tensors):
        raise TypeError(
            f"x and the SAE weights must share one dtype in {SUPPORTED_DTYPES}; got "
            f"{sorted({str(t.dtype) for t in tensors})} (cast x to W_enc.dtype)"
        )
    if k is not None and (not isinstance(k, int) or not 1 <= k <= d_sae):
        raise ValueError(f"k must be an int with 1 <= k <= d_sae={d_sae}, got {k!r}")
    if any(t.device != x.device for t in tensors):
        raise ValueError("x and the SAE weights must be on the same device")
    if x.device.type != "cuda" and not (x.device.type == "cpu" and interpreter_enabled()):
        raise RuntimeError(
            f"the Triton kernels need CUDA tensors (got {x.device.type}); on CPU use "
            "saes.reference, or set TRITON_INTERPRET=1 before importing triton (interpreter)"
        )


def _device_ctx(x: Tensor):
    """The CUDA device of x as a context (launches go to the current device)."""
    return torch.cuda.device(x.device) if x.device.type == "cuda" else contextlib.nullcontext()


def _launch_dense(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None,
                  threshold: Tensor | None, act: int) -> Tensor:  # fmt: skip
    """Run `_dense_kernel`: (n, d_sae) activations (act=ACT_NONE: pre-activations)."""
    (M, K), N = x.shape, W_enc.shape[1]
    out = torch.empty((M, N), dtype=x.dtype, device=x.device)
    if M == 0:
        return out
    interpret = interpreter_enabled()
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)
    with _device_ctx(x):
        _build(interpret).dense[grid](
            x, W_enc, b_enc, b_enc if b_dec is None else b_dec,
            b_enc if threshold is None else threshold, out,
            M, N, K, x.stride(0), x.stride(1), W_enc.stride(0), W_enc.stride(1),
            triton.next_power_of_2(M), ACT=act, HAS_B_DEC=b_dec is not None,
            **_numerics(x, interpret),
        )  # fmt: skip
    return out


def relu_encode(x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None) -> Tensor:
    """Fused relu((x - b_dec) @ W_enc + b_enc): (n, d_sae) in x.dtype."""
    _check_inputs(x, W_enc, b_enc, b_dec)
    return _launch_dense(x, W_enc, b_enc, b_dec, None, ACT_RELU)


def jumprelu_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, threshold: Tensor
) -> Tensor:
    """Fused SAE-Lens JumpReLU encode relu(h) * [h > threshold]: (n, d_sae) in x.dtype."""
    _check_inputs(x, W_enc, b_enc, b_dec, threshold)
    return _launch_dense(x, W_enc, b_enc, b_dec, threshold, ACT_JUMPRELU)


def unpack_keys(keys: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of the kernel's key packing: (n, k) int64 -> fp32 values, int64 indices."""
    hi = (keys >> 32).to(torch.int32)  # ordered int32 view of the fp32 value
    values = torch.where(hi >= 0, hi, hi ^ 0x7FFFFFFF).view(torch.float32)
    return values, 0x7FFFFFFF - (keys & 0xFFFFFFFF)


def _n_split(M: int, N: int, x: Tensor, interpret: bool) -> int:
    """How many N-ranges each block of rows is cut into (more: more programs, more
    candidates). GPU: about 4 programs per SM at BLOCK_M=128."""
    if interpret:  # small, but with several tiles per split and, at times, an empty split
        return max(1, min(3, triton.cdiv(N, 32)))
    n_sm = torch.cuda.get_device_properties(x.device).multi_processor_count
    return max(1, min(triton.cdiv(4 * n_sm, triton.cdiv(M, 128)), triton.cdiv(N, 128)))


def topk_encode(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, k: int
) -> TopKResult:
    """Fused TopK encode: the k largest pre-activations per row, (n, k) ReLU'd values in
    x.dtype and int64 indices, sorted descending; ties go to the smaller index."""
    _check_inputs(x, W_enc, b_enc, b_dec, k=k)
    (M, K), N = x.shape, W_enc.shape[1]
    interpret = interpreter_enabled()
    kt = triton.next_power_of_2(k)
    if kt > MAX_FUSED_KT:  # large k: a running top-k would not fit in registers
        top = torch.topk(_launch_dense(x, W_enc, b_enc, b_dec, None, ACT_NONE), k, dim=1)
        return TopKResult(torch.relu(top.values), top.indices)
    split = _n_split(M, N, x, interpret)
    cand = torch.empty((M, split * kt), dtype=torch.int64, device=x.device)  # (n, split * kt)
    if M > 0:
        grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), split)
        with _device_ctx(x):
            _build(interpret).topk[grid](
                x, W_enc, b_enc, b_enc if b_dec is None else b_dec, cand,
                M, N, K, x.stride(0), x.stride(1), W_enc.stride(0), W_enc.stride(1),
                triton.next_power_of_2(M), split, KT=kt, HAS_B_DEC=b_dec is not None,
                **_numerics(x, interpret),
            )  # fmt: skip
    keys = torch.topk(cand, k, dim=1, sorted=True).values  # (n, k): merge the splits
    values, indices = unpack_keys(keys)
    return TopKResult(torch.relu(values).to(x.dtype), indices)


def topk_encode_dense(
    x: Tensor, W_enc: Tensor, b_enc: Tensor, b_dec: Tensor | None, k: int
) -> Tensor:
    """Fused TopK encode, dense (n, d_sae) output (zeros but the k selected features)."""
    return topk_to_dense(topk_encode(x, W_enc, b_enc, b_dec, k), W_enc.shape[1])
