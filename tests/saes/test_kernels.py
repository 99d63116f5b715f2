"""saes.kernels against saes.reference (and a float64 oracle) at small odd shapes.

On CPU the kernels run in Triton's interpreter, which tests/conftest.py turns on before
anything imports triton; on a CUDA machine the same tests run natively.
"""

import pytest
import torch

triton = pytest.importorskip("triton")
from triton.runtime.interpreter import InterpretedFunction  # noqa: E402

from saes import kernels, reference  # noqa: E402

GPU = torch.cuda.is_available()
if not (GPU or isinstance(triton.language.cdiv, InterpretedFunction)):
    raise RuntimeError("triton was imported without TRITON_INTERPRET=1 on a CPU-only machine: "
                       "run the tests through pytest so tests/conftest.py sets it first")
DEVICE = "cuda" if GPU else "cpu"
TOL = {  # (rtol, atol) of kernel vs float64 oracle rounded like eager
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (1e-2, 1e-2),
    torch.float16: (1e-3, 1e-3),
}


def make_inputs(n=37, d_in=45, d_sae=203, dtype=torch.float32, seed=0):
    """Random encoder weights with O(1) pre-activations, about half of them positive."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    W = torch.randn(d_in, d_sae, generator=g) / d_in**0.5
    b_enc = 0.1 * torch.randn(d_sae, generator=g)
    b_dec = 0.3 * torch.randn(d_in, generator=g)
    thr = 0.5 * torch.rand(d_sae, generator=g)
    return [t.to(dtype=dtype, device=DEVICE) for t in (x, W, b_enc, b_dec, thr)]


def oracle_pre(x, W, b_enc, b_dec):
    """float64 pre-activations from the eager-rounded (x - b_dec): what fp32 accumulation
    approximates to ~1e-7."""
    sae_in = x if b_dec is None else x - b_dec  # rounded to x.dtype, as SAE-Lens does
    return sae_in.double() @ W.double() + b_enc.double()  # (n, d_sae)


def assert_close(got, want, dtype, scale=1.0):
    """Within dtype tolerance; scale > 1 against eager, which rounds twice (matmul, + b_enc)."""
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(got.double(), want.double(), rtol=scale * rtol, atol=scale * atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_relu_and_jumprelu_match_reference(dtype):
    x, W, b_enc, b_dec, thr = make_inputs(dtype=dtype)
    pre = oracle_pre(x, W, b_enc, b_dec)
    relu = kernels.relu_encode(x, W, b_enc, b_dec)
    assert relu.shape == (37, 203) and relu.dtype == dtype
    assert_close(relu, pre.clamp_min(0), dtype)
    assert_close(relu, reference.relu_encode(x, W, b_enc, b_dec), dtype, scale=3)
    jump = kernels.jumprelu_encode(x, W, b_enc, b_dec, thr)
    want = torch.where(pre > thr.double(), pre.clamp_min(0), 0.0)
    far = (pre - thr.double()).abs() > 2 * TOL[dtype][1]  # rounding may flip near-threshold
    assert 0.1 < (want[far] > 0).double().mean() < 0.9  # the threshold is doing something
    assert_close(jump[far], want[far], dtype)


@pytest.mark.parametrize("k", [1, 7, 32])  # KT > BLOCK_N: test_topk_dense_and_without_b_dec
def test_topk_fp32_matches_reference_exactly(k):
    x, W, b_enc, b_dec, _ = make_inputs()
    top = kernels.topk_encode(x, W, b_enc, b_dec, k)
    ref = reference.topk_encode(x, W, b_enc, b_dec, k)
    assert top.indices.dtype == torch.int64 and top.values.shape == (37, k)
    assert torch.equal(top.indices, ref.indices)  # random fp32: no ties
    assert_close(top.values, ref.values, torch.float32)
    assert (top.values[:, :-1] >= top.values[:, 1:]).all()  # sorted, descending


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_topk_low_precision_selects_the_largest(dtype):
    """Indices may differ from eager where rounded values tie, so check what was selected:
    the oracle values at the kernel's indices are the oracle's own top-k values."""
    x, W, b_enc, b_dec, _ = make_inputs(dtype=dtype)
    top = kernels.topk_encode(x, W, b_enc, b_dec, 7)
    pre = oracle_pre(x, W, b_enc, b_dec)
    want = pre.topk(7, dim=1).values
    assert_close(pre.gather(1, top.indices), want, dtype)
    assert_close(top.values, want.clamp_min(0), dtype)
    assert all(len(set(row.tolist())) == 7 for row in top.indices)


def test_topk_dense_and_without_b_dec():
    x, W, b_enc, _, _ = make_inputs(n=9, d_sae=70)
    dense = kernels.topk_encode_dense(x, W, b_enc, None, 70)  # k = d_sae, KT = 128 > BLOCK_N
    assert torch.allclose(dense, reference.relu_encode(x, W, b_enc, None), atol=1e-5)
    top = kernels.topk_encode(x, W, b_enc, None, 5)
    assert torch.equal(top.indices, reference.topk_encode(x, W, b_enc, None, 5).indices)


def test_large_k_uses_dense_path_and_matches():
    x, W, b_enc, b_dec, _ = make_inputs(n=5, d_sae=300)
    k = kernels.MAX_FUSED_KT + 4  # past the fused running buffer
    top = kernels.topk_encode(x, W, b_enc, b_dec, k)
    ref = reference.topk_encode(x, W, b_enc, b_dec, k)
    assert torch.equal(top.indices, ref.indices)
    assert_close(top.values, ref.values, torch.float32)


def test_ties_go_to_the_smaller_index():
    x, W, b_enc, b_dec, _ = make_inputs(n=3, d_sae=150)
    W = torch.zeros_like(W)
    b_enc = torch.full_like(b_enc, 0.25)  # every pre-activation is exactly 0.25
    top = kernels.topk_encode(x, W, b_enc, b_dec, 10)
    assert torch.equal(top.indices, torch.arange(10, device=DEVICE).expand(3, 10))


def test_batch_one_empty_batch_and_strided_weights():
    x, W, b_enc, b_dec, _ = make_inputs()
    W_t = W.T.contiguous().T  # same values, column-major strides (like W_dec.T)
    one = kernels.relu_encode(x[:1], W_t, b_enc, b_dec)
    assert_close(one, reference.relu_encode(x[:1], W, b_enc, b_dec), torch.float32)
    assert kernels.relu_encode(x[:0], W, b_enc, b_dec).shape == (0, 203)
    assert kernels.topk_encode(x[:0], W, b_enc, b_dec, 3).indices.shape == (0, 3)


def test_bad_inputs_raise_clear_errors(monkeypatch):
    x, W, b_enc, b_dec, thr = make_inputs(n=4, d_sae=20)
    with pytest.raises(ValueError, match="x \\(n, d_in\\)"):
        kernels.relu_encode(x[:, :-1], W, b_enc, b_dec)
    with pytest.raises(TypeError, match="cast x"):
        kernels.relu_encode(x.half(), W, b_enc, b_dec)
    with pytest.raises(TypeError, match="one dtype"):
        kernels.relu_encode(x.double(), W.double(), b_enc.double(), b_dec.double())
    with pytest.raises(ValueError, match="threshold must be a contiguous"):
        kernels.jumprelu_encode(x, W, b_enc, b_dec, torch.stack([thr, thr], 1)[:, 0])
    for k in (0, 21):
        with pytest.raises(ValueError, match="1 <= k <= d_sae=20"):
            kernels.topk_encode(x, W, b_enc, b_dec, k)
    if not GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="need CUDA tensors"):
            kernels.relu_encode(x, W, b_enc, b_dec)

