"""SAEs are saved so that SAE-Lens-based clients (sae-dashboard, Neuronpedia) load them as they
are: ``SAE.load_from_disk(path).fold_W_dec_norm()`` works, and encoding is unchanged."""

from __future__ import annotations

import json

import pytest
import sae_lens
import torch
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

from saes.io import RESCALE, list_shipped, load_sae, save_sae


def topk_sae(unit_norm: bool) -> TopKSAE:
    cfg = TopKSAEConfig(d_in=16, d_sae=48, k=4, dtype="float32", device="cpu",
                        reshape_activations="hook_z",
                        metadata=SAEMetadata(hook_name="blocks.0.attn.hook_z"))
    sae = TopKSAE(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(sae.W_enc.shape, generator=g) / 4)
        sae.b_enc.copy_(torch.randn(sae.b_enc.shape, generator=g) / 10)
        w = torch.randn(sae.W_dec.shape, generator=g)
        scale = 1.0 if unit_norm else torch.rand(48, 1, generator=g) + 0.5
        sae.W_dec.copy_(w / w.norm(dim=-1, keepdim=True) * scale)
    return sae.eval()


def _x(d_in: int) -> torch.Tensor:
    return torch.randn(64, 1, d_in, generator=torch.Generator().manual_seed(1)) * 2


@pytest.mark.parametrize("folder", [p for _, _, p in list_shipped()], ids=lambda p: p.name)
def test_shipped_saes_fold_in_sae_lens_and_encode_unchanged(folder):
    raw = json.loads((folder / "cfg.json").read_text())
    if raw.get("architecture") != "topk":
        pytest.skip("not a TopK SAE")  # pragma: no cover - every shipped SAE is TopK today
    assert raw[RESCALE] is True
    ours = load_sae(folder)  # attnlab's loader: plain encode (flag off in memory)
    assert getattr(ours.cfg, RESCALE) is False
    client = sae_lens.SAE.load_from_disk(str(folder))  # what sae-dashboard does
    client.fold_W_dec_norm()  # raised NotImplementedError with the flag off
    x = _x(ours.cfg.d_in)
    a, b = ours.encode(x), client.encode(x)
    assert torch.equal(a > 0, b > 0)  # the same k features win
    assert torch.allclose(a, b, atol=1e-5)


def test_save_marks_a_unit_norm_topk_sae_foldable(tmp_path):
    sae = topk_sae(unit_norm=True)
    x = _x(16)
    before = sae.encode(x)
    save_sae(sae, tmp_path / "sae")
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())[RESCALE] is True
    client = sae_lens.SAE.load_from_disk(str(tmp_path / "sae"))
    client.fold_W_dec_norm()
    assert torch.allclose(client.encode(x), before, atol=1e-5)
    assert torch.allclose(load_sae(tmp_path / "sae").encode(x), before, atol=1e-6)


def test_save_leaves_a_non_unit_decoder_unmarked(tmp_path):
    """Marking it would change which k features win: SAE-Lens is right to refuse the fold."""
    save_sae(topk_sae(unit_norm=False), tmp_path / "sae")
    assert json.loads((tmp_path / "sae" / "cfg.json").read_text())[RESCALE] is False
    with pytest.raises(NotImplementedError):
        sae_lens.SAE.load_from_disk(str(tmp_path / "sae")).fold_W_dec_norm()
