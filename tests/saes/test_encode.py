"""saes.encode against SAE-Lens' own `encode` for the same weights, on both input shapes.

The "triton" tests run the kernels in Triton's CPU interpreter, which tests/conftest.py turns
on before anything imports triton (natively on a GPU); they skip only where triton is absent.
"""

import pytest
import sae_lens
import torch
from sae_lens.saes.sae import SAEMetadata

from saes import EncodeResult, encode, resolve_impl

GPU = torch.cuda.is_available()


def _triton_runs_here() -> bool:
    try:
        import triton
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return False
    if not (GPU or isinstance(triton.language.cdiv, InterpretedFunction)):
        raise RuntimeError("triton was imported without TRITON_INTERPRET=1 on a CPU-only "
                           "machine: run the tests through pytest so tests/conftest.py sets it")
    return True


TRITON_HERE = _triton_runs_here()
DEVICE = "cuda" if GPU else "cpu"
needs_triton = pytest.mark.skipif(not TRITON_HERE, reason="triton is not installed")
N_HEADS, D_HEAD, D_SAE, K = 4, 8, 67, 5
D_IN = N_HEADS * D_HEAD
ARCHS = {
    "standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
    "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
    "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": K}),
}


def make_sae(arch, dtype="float32", **cfg):
    """A hook_z SAE-Lens SAE with random weights (nonzero biases, thresholds that bite)."""
    sae_cls, cfg_cls, extra = ARCHS[arch]
    meta = SAEMetadata(hook_name="blocks.0.attn.hook_z")
    cfg = {"reshape_activations": "hook_z", **extra, **cfg}
    config = cfg_cls(d_in=D_IN, d_sae=D_SAE, dtype=dtype, device=DEVICE, metadata=meta, **cfg)
    sae = sae_cls(config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, scale in [("W_enc", D_IN**-0.5), ("b_enc", 0.1), ("b_dec", 0.3)]:
            param = getattr(sae, name)
            param.copy_(scale * torch.randn(param.shape, generator=g))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(0.4 * torch.rand(D_SAE, generator=g))
    return sae


def z_batch(dtype=torch.float32):
    """hook_z-shaped activations (batch, pos, head, d_head)."""
    g = torch.Generator().manual_seed(1)
    return torch.randn(2, 3, N_HEADS, D_HEAD, generator=g).to(device=DEVICE, dtype=dtype)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_torch_path_equals_sae_lens_for_both_input_shapes(arch):
    sae, z = make_sae(arch), z_batch()
    want = sae.encode(z)  # (2, 3, d_sae)
    for x in (z, z.reshape(2, 3, D_IN)):
        res = encode(sae, x, impl="torch")
        assert isinstance(res, EncodeResult) and res.impl == "torch"
        assert res.acts.shape == (2, 3, D_SAE)
        assert torch.equal(res.acts, want)
    if arch == "topk":
        assert res.topk_values.shape == res.topk_indices.shape == (2, 3, K)
        assert torch.equal(want.gather(-1, res.topk_indices), res.topk_values)
    else:
        assert res.topk_values is None and res.topk_indices is None
    assert (want > 0).any() and (want == 0).any()


@needs_triton
@pytest.mark.parametrize("arch", list(ARCHS))
def test_triton_path_matches_sae_lens(arch):
    sae, z = make_sae(arch), z_batch()
    res = encode(sae, z, impl="triton")
    assert res.impl == "triton" and ("interpreter" in res.reason or GPU)
    torch.testing.assert_close(res.acts, sae.encode(z), rtol=1e-5, atol=1e-5)
    if arch == "topk":
        assert torch.equal((res.acts != 0), (sae.encode(z) != 0))  # the same features fire


@needs_triton
def test_triton_bf16_and_no_b_dec_match_sae_lens():
    z = z_batch(torch.bfloat16)
    sae = make_sae("standard", dtype="bfloat16")
    res = encode(sae, z, impl="triton")
    assert res.acts.dtype == torch.bfloat16
    torch.testing.assert_close(res.acts.float(), sae.encode(z).float(), rtol=3e-2, atol=3e-2)
    # TopK in bf16: near-ties at the k-th place may pick another feature (the kernel ranks
    # fp32 accumulators, SAE-Lens bf16-rounded values), so compare the selected values.
    sae = make_sae("topk", dtype="bfloat16")
    res = encode(sae, z, impl="triton", dense=False)
    want = torch.topk(sae.encode(z).float(), K, dim=-1).values
    torch.testing.assert_close(res.topk_values.float(), want, rtol=3e-2, atol=3e-2)
    sae = make_sae("standard", apply_b_dec_to_input=False)
    res = encode(sae, z_batch(), impl="triton")
    torch.testing.assert_close(res.acts, sae.encode(z_batch()), rtol=1e-5, atol=1e-5)


def test_dense_false_returns_only_the_top_k():
    sae, z = make_sae("topk"), z_batch()
    res = encode(sae, z, impl="torch", dense=False)
    assert res.acts is None
    assert torch.equal(sae.encode(z).gather(-1, res.topk_indices), res.topk_values)
    with pytest.raises(ValueError, match="dense=False needs a TopK SAE"):
        encode(make_sae("standard"), z, dense=False)


def test_unfused_configurations_run_sae_lens_encode():
    z = z_batch()
    sae = make_sae("standard", normalize_activations="layer_norm")
    res = encode(sae, z)
    assert res.impl == "sae_lens" and "normalisation" in res.reason
    assert torch.equal(res.acts, sae.encode(z))
    sae = make_sae("topk", rescale_acts_by_decoder_norm=True)
    res = encode(sae, z, impl="torch")
    assert res.impl == "sae_lens" and "rescale_acts_by_decoder_norm" in res.reason
    assert torch.equal(res.acts, sae.encode(z))
    assert torch.equal(res.acts.gather(-1, res.topk_indices), res.topk_values)


def test_hooked_sae_runs_sae_lens_encode_and_the_hook_fires():
    sae, z = make_sae("jumprelu"), z_batch()
    calls = []
    handle = sae.hook_sae_acts_post.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = encode(sae, z)
    finally:
        handle.remove()
    assert res.impl == "sae_lens" and "hooks" in res.reason and calls == [1]


def test_flat_input_fallback_leaves_a_hook_z_sae_as_it_was():
    sae, z = make_sae("standard", normalize_activations="layer_norm"), z_batch()
    want = sae.encode(z)  # SAE-Lens records d_head = 8 here
    res = encode(sae, z.reshape(2, 3, D_IN))
    assert torch.equal(res.acts, want)
    assert sae.d_head == D_HEAD and sae.decode(want).shape == z.shape


def test_training_saes():
    x = z_batch().reshape(6, D_IN)  # training SAEs take flat input
    cfg = sae_lens.StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, device=DEVICE)
    sae = sae_lens.StandardTrainingSAE(cfg)
    res = encode(sae, x, impl="torch")
    assert res.impl == "torch" and torch.equal(res.acts, sae.encode(x))
    cfg = sae_lens.JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, device=DEVICE)
    sae = sae_lens.JumpReLUTrainingSAE(cfg)
    res = encode(sae, x)  # its h * [h > t] has no ReLU: not the fused math
    assert res.impl == "sae_lens" and torch.equal(res.acts, sae.encode(x))


def test_auto_resolution_and_explicit_triton_without_cuda(monkeypatch):
    impl, reason = resolve_impl("auto", torch.device(DEVICE))
    assert impl == ("triton" if GPU else "torch") and reason.startswith("auto")
    res = encode(make_sae("standard"), z_batch())
    assert res.impl == impl and res.reason == reason
    with pytest.raises(ValueError, match="impl must be one of"):
        resolve_impl("cuda", torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        encode(make_sae("standard"), z_batch().cpu(), impl="triton")


def test_bad_inputs_raise_clear_errors():
    sae, z = make_sae("standard"), z_batch()
    with pytest.raises(ValueError, match="expects"):
        encode(sae, z[..., :-1])
    plain = make_sae("standard", reshape_activations="none")
    with pytest.raises(ValueError, match=r"expects \(\.\.\., d_in\) with d_in=32"):
        encode(plain, z)  # hook_z-shaped input to a non-hook_z SAE
    with pytest.raises(TypeError, match="floating-point"):
        encode(sae, z.long())
    with pytest.raises(TypeError, match="sae_lens.SAE"):
        encode(torch.nn.Linear(2, 2), z)
    bad = z.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        encode(sae, bad, check_finite=True)
    assert encode(sae, bad, impl="torch", check_finite=False).acts.isnan().any()  # unchecked

