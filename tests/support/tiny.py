"""The one tiny-model factory of the test suite: random configs, models, tokens, SAEs, pairs.

``tiny_cfg`` is the base config (2 layers, d_model 32, 4 heads of 8); the other helpers build on
it. ``tiny_decoder``/``tiny_encoder`` randomise the LayerNorm weights so that a wrong LayerNorm
affine would change the redundancy scores.
"""

from __future__ import annotations

import logging
import warnings

import torch
from transformer_lens import HookedEncoder, HookedTransformer, HookedTransformerConfig

from analyses.causal.patching import PatchPair
from probes.models import LoadedModel
from probes.tokens import Tokens


def tiny_cfg(**overrides) -> HookedTransformerConfig:
    """A tiny random causal model config (2 layers, d_model 32, 4 heads of 8, vocab 50)."""
    kw = dict(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=32, d_vocab=50,
              act_fn="gelu", normalization_type="LN", seed=0, device="cpu")
    kw.update(overrides)
    return HookedTransformerConfig(**kw)


def _cfg(**kw) -> HookedTransformerConfig:
    return tiny_cfg(**{"n_layers": 3, **kw})


def _randomise_ln(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.w", "ln2.w", "ln.w", "ln_final.w")):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(("ln1.b", "ln2.b", "ln.b", "ln_final.b")):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def tiny_decoder(**kw) -> LoadedModel:
    model = HookedTransformer(_cfg(**kw)).eval()
    _randomise_ln(model)
    return LoadedModel(model=model, tokenizer=None, kind="decoder", name="tiny-decoder")


def tiny_encoder(**kw) -> LoadedModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            model = HookedEncoder(_cfg(attention_dir="bidirectional", **kw),
                                  move_to_device=False).eval()
        finally:
            logging.getLogger().setLevel(level)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # HookedEncoder leaves its weights uninitialised (torch.empty)
        for p in model.parameters():
            p.copy_(0.15 * torch.randn(p.shape, generator=gen))
    _randomise_ln(model)
    return LoadedModel(model=model, tokenizer=None, kind="encoder", name="tiny-encoder")


def padded_tokens(n: int = 5, width: int = 9, d_vocab: int = 50, seed: int = 0) -> Tokens:
    """``n`` random prompts of lengths between 3 and ``width``, right-padded."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, d_vocab, (n, width), generator=gen)
    lengths = torch.tensor([width - (i * 2) % (width - 2) for i in range(n)])
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    ids = ids * mask  # pad id 0
    return Tokens(ids, mask, lengths, [["t"] * int(n_) for n_ in lengths])


def make_pair(d_vocab=50, batch=3, n_pos=5, seed=0, per_prompt=True) -> PatchPair:
    """Random clean prompts, one swapped token, and a last-position logit-difference metric."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, d_vocab, (batch, n_pos), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(1, d_vocab, (batch,), generator=g)  # one swapped token
    answers = torch.randint(1, d_vocab, (batch, 2), generator=g)

    def logit_diff(logits):
        last = logits[:, -1]  # (batch, d_vocab)
        ld = last.gather(1, answers[:, :1]) - last.gather(1, answers[:, 1:])
        return ld[:, 0] if per_prompt else ld.mean()

    return PatchPair(clean, corrupted, logit_diff, task="toy")


def tiny_loaded(seed: int = 0) -> LoadedModel:
    """A 2-layer random decoder as a LoadedModel (seeded)."""
    torch.manual_seed(seed)
    return LoadedModel(HookedTransformer(tiny_cfg()).eval(), None, "decoder", "tiny")


def random_tokens(n: int = 12, width: int = 16, seed: int = 0, pad_from: int | None = None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (n, width), generator=g)
    mask = torch.ones(n, width, dtype=torch.long)
    if pad_from is not None:
        mask[::2, pad_from:] = 0  # every other prompt is shorter
    return Tokens(ids, mask, mask.sum(1), [["t"] * int(m) for m in mask.sum(1)])


def random_sae(d_in: int, d_sae: int = 24, arch: str = "standard", seed: int = 0):
    """A SAE-Lens hook_z SAE with random (non-zero-bias) weights."""
    import sae_lens

    torch.manual_seed(seed)
    if arch == "topk":
        cfg = sae_lens.TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=4, reshape_activations="hook_z")
        sae = sae_lens.TopKSAE(cfg)
    else:
        cfg = sae_lens.StandardSAEConfig(d_in=d_in, d_sae=d_sae, reshape_activations="hook_z")
        sae = sae_lens.StandardSAE(cfg)
    sae.cfg.metadata.hook_name = "blocks.1.attn.hook_z"
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return sae.requires_grad_(False).eval()


def padded_batch(seed: int = 1, width: int = 10, lengths=(10, 6, 3), d_vocab: int = 50):
    """Random ids (batch, pos) and a right-padding mask keeping ``lengths[i]`` tokens of row i."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, d_vocab, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids, mask


#: Architecture variants of :func:`tiny_cfg` for engines that cover several decoder families:
#: LayerNorm vs RMSNorm, plain vs gated MLP, multi-head vs grouped-query attention (2 key/value
#: heads for 4 query heads), learned vs rotary positions, and all Llama-style parts together.
VARIANTS = {
    "ln_gelu_learned": {},
    "rms": dict(normalization_type="RMS"),
    "rmspre_rotary": dict(normalization_type="RMSPre", positional_embedding_type="rotary",
                          rotary_dim=8),
    "gated_silu": dict(gated_mlp=True, act_fn="silu"),
    "gqa": dict(n_key_value_heads=2),
    "llama": dict(normalization_type="RMS", gated_mlp=True, act_fn="silu", n_key_value_heads=2,
                  positional_embedding_type="rotary", rotary_dim=8, final_rms=True),
}


def tiny_variant(name: str, **overrides) -> HookedTransformer:
    """A random 3-layer decoder of architecture ``VARIANTS[name]`` (weights at scale 0.1,
    norm weights and every bias randomised, so that a dropped affine or bias shows)."""
    cfg = _cfg(**{"initializer_range": 0.1, **VARIANTS[name], **overrides})
    model = HookedTransformer(cfg).eval()
    _randomise_ln(model)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if name_.rsplit(".", 1)[-1] in ("b_Q", "_b_K", "_b_V", "b_K", "b_V", "b_O", "b_in",
                                            "b_out"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model
