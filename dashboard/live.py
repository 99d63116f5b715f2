"""Live computations for a prompt typed in a page (the only model work the dashboard does).

Nothing here runs on page load: pages call these after the user submits a prompt. Results
are cached per (model, prompt), models once per process (:func:`dashboard.readers.model`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import readers

#: Longest prompt the live viewers accept, in tokens (a pattern grid beyond this is unreadable).
MAX_LIVE_TOKENS = 64


class Patterns(NamedTuple):
    """Attention patterns of every head for one prompt."""

    str_tokens: list[str]  # the prompt's tokens, specials included
    pattern: np.ndarray  # (layer, head, query_pos, key_pos) float32


@st.cache_data(show_spinner="Running the model on the prompt ...", max_entries=32)
def attention_patterns(model_name: str, prompt: str) -> Patterns:
    """All heads' patterns for ``prompt`` via ``run_with_cache`` restricted to hook_pattern.

    Raises ``ValueError`` for an empty or too-long prompt, ``ModelNotAvailable`` when the
    model cannot be loaded here.
    """
    from probes.tokens import tokenize

    loaded = readers.model(model_name)
    tokens = tokenize(loaded, prompt, max_len=MAX_LIVE_TOKENS)
    ids = tokens.ids.to(loaded.cfg.device)  # (1, pos)
    _, cache = loaded.model.run_with_cache(
        ids, return_type=None, names_filter=lambda name: name.endswith("attn.hook_pattern"))
    n_layers = loaded.cfg.n_layers
    # each hook_pattern is (batch, head, query_pos, key_pos)
    stacked = np.stack([cache[f"blocks.{i}.attn.hook_pattern"][0].float().cpu().numpy()
                        for i in range(n_layers)])
    return Patterns(tokens.str_tokens[0], stacked.astype(np.float32))


@st.cache_data(show_spinner="Encoding the prompt with the SAE ...", max_entries=32)
def sae_features(model_name: str, sae_path: str, layer: int, prompt: str,
                 top_n: int = 5) -> pd.DataFrame:
    """The ``top_n`` strongest SAE features at each token of ``prompt``.

    hook_z of ``layer`` goes through ``saes.encode`` (fused Triton kernel on GPU, eager on
    CPU). Long table: pos, token, rank, feature, activation, impl.
    """
    import torch

    from probes.tokens import tokenize
    from saes.activations import check_sae_fits, collect_hook_z
    from saes.encode import encode

    loaded = readers.model(model_name)
    sae = readers.sae(sae_path)
    check_sae_fits(sae, loaded.model, layer)
    tokens = tokenize(loaded, prompt, max_len=MAX_LIVE_TOKENS)
    z = collect_hook_z(loaded, tokens, layer).z.to(sae.W_enc.device)  # (pos, head, d_head)
    result = encode(sae, z)
    acts = result.acts.float()  # (pos, d_sae)
    k = min(top_n, acts.shape[-1])
    values, features = torch.topk(acts, k, dim=-1)  # (pos, k)
    rows = [{"pos": p, "token": tok, "rank": r, "feature": int(features[p, r]),
             "activation": float(values[p, r]), "impl": result.impl}
            for p, tok in enumerate(tokens.str_tokens[0]) for r in range(k)
            if float(values[p, r]) > 0]
    return pd.DataFrame(rows, columns=["pos", "token", "rank", "feature", "activation", "impl"])


@st.cache_data(show_spinner=False)
def default_prompt(model_name: str) -> str:
    """A prompt the model's vocabulary covers: an IOI item for the organism, else English."""
    if model_name == "organism":
        try:
            from data.tasks import load_task

            return load_task("ioi", n=1, seed=0).clean_prompts[0]
        except Exception:  # noqa: BLE001 - a default prompt must never break the page
            pass
    return "When Mary and John went to the store, John gave a drink to Mary."


class FeatureOnPrompt(NamedTuple):
    """One SAE feature on one prompt: its activation per token and, at the token where it is
    strongest, its exact DFA split by head and source position (Kissane et al. 2024)."""

    str_tokens: list[str]
    acts: np.ndarray  # (pos,) the feature's activation (saes.encode)
    query_pos: int  # the position the DFA explains (argmax of the pre-activation)
    by_source: np.ndarray  # (head, key_pos) DFA terms at query_pos
    offset: np.ndarray  # (head,) the -b_dec term of each head
    bias: float  # the b_enc term
    impl: str


@st.cache_data(show_spinner="Attributing the feature on the prompt ...", max_entries=32)
def feature_on_prompt(model_name: str, sae_path: str, layer: int, prompt: str,
                      feature: int) -> FeatureOnPrompt:
    """``feature``'s activation at every token of ``prompt`` and its DFA by head and source
    position (``saes.attribution.dfa_for_tokens``) at its strongest token."""
    from probes.tokens import tokenize
    from saes.activations import check_sae_fits, collect_hook_z
    from saes.attribution import dfa_for_tokens
    from saes.encode import encode

    loaded = readers.model(model_name)
    sae = readers.sae(sae_path)
    check_sae_fits(sae, loaded.model, layer)
    if not 0 <= int(feature) < int(sae.cfg.d_sae):
        raise ValueError(f"feature {feature} is not in this SAE (d_sae {sae.cfg.d_sae})")
    tokens = tokenize(loaded, prompt, max_len=MAX_LIVE_TOKENS)
    z = collect_hook_z(loaded, tokens, layer).z.to(sae.W_enc.device)  # (pos, head, d_head)
    result = encode(sae, z)
    acts = result.acts.float()[:, int(feature)].cpu().numpy()  # (pos,)
    dfa = dfa_for_tokens(loaded, sae, layer, tokens, [int(feature)], by_source=True)
    pre = dfa.by_head.pre[0, :, 0].float().cpu().numpy()  # (pos,)
    q = int(np.argmax(acts)) if acts.max() > 0 else int(np.argmax(pre))
    src = dfa.by_source.per_source[0, q, :, :, 0].float().cpu().numpy()  # (key_pos, head)
    return FeatureOnPrompt(tokens.str_tokens[0], acts, q, src.T.copy(),
                           dfa.by_source.offset[:, 0].float().cpu().numpy(),
                           float(dfa.by_source.bias[0]), result.impl)
