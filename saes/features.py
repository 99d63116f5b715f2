"""Feature tables of an attention SAE, long-format, for the dashboard and reports.

    ft = feature_tables(loaded, sae, layer, tokens)   # FeatureTables of DataFrames
    ft.top_examples    feature, rank, activation, token, context, prompt_idx, pos,
                       context_tokens, context_acts, context_pos
    ft.bands           feature, band, band_low, band_high, band_count, rank, activation, token,
                       context, prompt_idx, pos, context_tokens, context_acts, context_pos
                       (activation-quantile band examples)
    ft.histogram       feature, bin_left, bin_right, count        (non-zero activations)
    ft.dfa_heads       feature, layer, head, value, share, weight_share, n_active
    ft.logit_effects   feature, direction (promoted|suppressed), rank, token, value
    ft.head_summary / ft.head_features: see `saes.heads`

`bands` (Neuronpedia / sae_vis style): each feature's range (0, max] is cut into `n_bands`
equal-width bands, band b holding the activations in (band_low, band_high]; up to `per_band`
examples are drawn from each band at random (seeded), so the view shows what weak and middling
activations look like, not only the top ones. sae_vis computes these from its own model runner
and SAE-Lens has no such table, so they are built here from the same pass as the top examples.
`dfa_heads.value` is the mean DFA term of the head (Kissane et al. 2024) over the tokens
where the feature is active; `share` = value / sum over heads (the heads' shares sum to 1);
`weight_share` = ||W_dec[f, h-slice]|| / sum_h' ||W_dec[f, h'-slice]|| (docs/METHODS.md §5).
Logit effect (decoders only): the feature's decoder direction written through W_O of each
head and read by the unembedding (through the final LayerNorm's centring and weight; its
scale is per-token and left out), as in the paper's direct logit attribution of features.
`context_tokens` / `context_acts` (JSON lists, aligned): the tokens of the example's context
window and the feature's activation at each of them (0 where it is inactive; `context_pos` is
the example token's index in them; `context` stays the readable string), so the view can
colour every token as sae_vis / Neuronpedia do; they come from the same sparse pass, no
extra forward. All encoding goes through `saes.encode`.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from probes.models import LoadedModel
from probes.tokens import Tokens, batches
from saes.activations import check_sae_fits, hook_z_name, record_tokens
from saes.attribution import dfa_by_head
from saes.encode import encode
from saes.heads import head_summary

TOKEN_CHUNK = 512  # tokens per DFA chunk: memory chunk * n_heads * d_sae floats


class FeatureTables(NamedTuple):
    top_examples: pd.DataFrame
    bands: pd.DataFrame  # activation-quantile band examples (see `band_examples`)
    histogram: pd.DataFrame
    dfa_heads: pd.DataFrame
    logit_effects: pd.DataFrame  # empty for encoders
    head_summary: pd.DataFrame
    head_features: pd.DataFrame


class FeaturePass(NamedTuple):
    """What one pass over the tokens keeps: sparse activations and DFA sums."""

    row: Tensor  # (nnz,) token row of each non-zero activation
    feature: Tensor  # (nnz,) feature index
    value: Tensor  # (nnz,) activation
    prompt_idx: Tensor  # (n,) prompt of each token row
    pos: Tensor  # (n,) position of each token row
    dfa_sum: Tensor  # (d_sae, head) float64 sum of head terms over active tokens
    n_active: Tensor  # (d_sae,) float64 number of tokens where the feature is active


def _chunk_stats(sae, z: Tensor, impl: str):
    """Activations and per-head DFA sums of one chunk z (n, head, d_head)."""
    acts = encode(sae, z, impl=impl).acts.float()  # (n, d_sae)
    active = acts > 0
    per_head = dfa_by_head(sae, z).per_head  # (n, head, d_sae)
    dfa = torch.einsum("nhf,nf->fh", per_head.double(), active.double()).cpu()  # (d_sae, head)
    return acts, active, dfa


@torch.no_grad()
def collect(loaded, sae, layer: int, tokens: Tokens, batch_size=32, impl="auto") -> FeaturePass:
    """One pass over `tokens`: non-zero activations and per-head DFA sums."""
    d_sae, n_heads = int(sae.cfg.d_sae), int(loaded.cfg.n_heads)
    rows, feats, vals, prompts, positions = [], [], [], [], []
    dfa_sum = torch.zeros(d_sae, n_heads, dtype=torch.float64)
    n_active = torch.zeros(d_sae, dtype=torch.float64)
    n_rows = 0
    for i, tb in enumerate(batches(tokens, batch_size)):
        z = record_tokens(loaded, tb, [hook_z_name(layer)])[hook_z_name(layer)]
        b_idx, p_idx = tb.attention_mask.bool().nonzero(as_tuple=True)
        z = z[b_idx.to(z.device), p_idx.to(z.device)]  # (n, head, d_head), real tokens
        prompts.append(b_idx + i * batch_size)
        positions.append(p_idx)
        for start in range(0, z.shape[0], TOKEN_CHUNK):
            acts, active, dfa = _chunk_stats(sae, z[start : start + TOKEN_CHUNK], impl)
            dfa_sum += dfa
            n_active += active.sum(0).double().cpu()
            r, f = active.nonzero(as_tuple=True)
            rows.append(r.cpu() + n_rows + start)
            feats.append(f.cpu())
            vals.append(acts[r, f].cpu())
        n_rows += z.shape[0]
    return FeaturePass(torch.cat(rows), torch.cat(feats), torch.cat(vals), torch.cat(prompts),
                       torch.cat(positions), dfa_sum, n_active)


def _context(str_tokens: list[str], pos: int, left: int, right: int) -> str:
    """Tokens around `pos`, the token itself marked as [[token]]."""
    before = str_tokens[max(0, pos - left) : pos]
    after = str_tokens[pos + 1 : pos + 1 + right]
    return " ".join([*before, f"[[{str_tokens[pos]}]]", *after])


def _context_acts(fp: FeaturePass, df: pd.DataFrame, lengths: list[int], left: int,
                  right: int) -> list[str]:
    """Per example row of `df`, JSON list of its feature's activation at each context token.

    The window is `_context`'s (pos - left .. pos + right, clipped to the prompt). Token rows
    of `fp` are prompt-major with a prompt's real tokens at consecutive rows, so token
    (p, q) is row first_row[p] + q; activations are looked up in the sparse (row, feature)
    pairs, missing pairs being inactive (0).
    """
    d_sae = int(fp.dfa_sum.shape[0])
    keys = fp.row.numpy().astype(np.int64) * d_sae + fp.feature.numpy().astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], fp.value.numpy()[order]
    first_row = np.searchsorted(fp.prompt_idx.numpy(), np.arange(len(lengths)), side="left")
    out = []
    for f, p, q in zip(df.feature.to_numpy(), df.prompt_idx.to_numpy(), df.pos.to_numpy()):
        rows = first_row[p] + np.arange(max(0, q - left), min(lengths[p], q + 1 + right))
        want = rows.astype(np.int64) * d_sae + int(f)
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)  # df rows => nnz > 0
        acts = np.where(keys[at] == want, vals[at], 0.0)
        out.append(json.dumps([round(float(a), 6) for a in acts]))
    return out


def _with_tokens(df: pd.DataFrame, fp: FeaturePass, tokens: Tokens, context: int) -> pd.DataFrame:
    """Add prompt_idx, pos, token, context and the per-token context columns to rows that
    hold a token ``row`` of `fp`."""
    df["prompt_idx"] = fp.prompt_idx.numpy()[df.row.to_numpy()]
    df["pos"] = fp.pos.numpy()[df.row.to_numpy()]
    strs, left, right = tokens.str_tokens, context, context // 2
    df["token"] = [strs[p][q] for p, q in zip(df.prompt_idx, df.pos)]
    df["context"] = [_context(strs[p], q, left, right) for p, q in zip(df.prompt_idx, df.pos)]
    df["context_tokens"] = [json.dumps(strs[p][max(0, q - left) : q + 1 + right])
                            for p, q in zip(df.prompt_idx, df.pos)]
    df["context_acts"] = _context_acts(fp, df, [len(s) for s in strs], left, right)
    df["context_pos"] = np.minimum(df.pos.to_numpy(), left)  # the example token's index there
    return df


#: JSON lists aligned per context token, and the example token's index in them
CONTEXT_COLUMNS = ["context_tokens", "context_acts", "context_pos"]


def _active(fp: FeaturePass, features) -> pd.DataFrame:
    """feature, activation, row of every non-zero activation of `features`."""
    df = pd.DataFrame({"feature": fp.feature.numpy(), "activation": fp.value.numpy(),
                       "row": fp.row.numpy()})
    return df[df.feature.isin(np.asarray(features))]


def top_examples(fp: FeaturePass, tokens: Tokens, features, n_top=10, context=8) -> pd.DataFrame:
    """The `n_top` highest activations of each feature, with token and context."""
    df = _active(fp, features)
    df = df.sort_values(["feature", "activation"], ascending=[True, False], kind="stable")
    df = df.groupby("feature", sort=True).head(n_top).copy()
    df["rank"] = df.groupby("feature").cumcount()
    df = _with_tokens(df, fp, tokens, context)
    cols = ["feature", "rank", "activation", "token", "context", "prompt_idx", "pos",
            *CONTEXT_COLUMNS]
    return df[cols].reset_index(drop=True)


BAND_COLUMNS = ["feature", "band", "band_low", "band_high", "band_count", "rank", "activation",
                "token", "context", "prompt_idx", "pos", *CONTEXT_COLUMNS]


def band_examples(fp: FeaturePass, tokens: Tokens, features, n_bands: int = 4,
                  per_band: int = 3, context: int = 8, seed: int = 0) -> pd.DataFrame:
    """Up to `per_band` random examples of each of `n_bands` equal-width activation bands.

    Band b (0 = lowest) of a feature with maximum activation m holds the activations in
    (b m / n_bands, (b + 1) m / n_bands]; empty bands have no rows. Within a band, rank 0 is
    the highest sampled activation.
    """
    if n_bands < 1 or per_band < 1:
        raise ValueError(f"n_bands ({n_bands}) and per_band ({per_band}) must be >= 1")
    rng = np.random.default_rng(seed)
    out = []
    for _, part in _active(fp, features).groupby("feature", sort=True):
        v = part.activation.to_numpy().astype(np.float64)
        edges = np.linspace(0.0, float(v.max()), n_bands + 1)
        edges[-1] = float(v.max())  # exact, so the top activation is inside the top band
        band = np.searchsorted(edges[1:-1], v, side="left")  # edges[b] < v <= edges[b + 1]
        for b in np.unique(band):
            idx = np.flatnonzero(band == b)
            pick = rng.choice(idx, size=min(per_band, idx.size), replace=False)
            rows = part.iloc[pick].sort_values("activation", ascending=False, kind="stable")
            out.append(rows.assign(band=int(b), band_low=edges[b], band_high=edges[b + 1],
                                   band_count=int(idx.size), rank=np.arange(len(rows))))
    if not out:
        return pd.DataFrame(columns=BAND_COLUMNS)
    df = _with_tokens(pd.concat(out, ignore_index=True), fp, tokens, context)
    return df[BAND_COLUMNS].reset_index(drop=True)


def histogram(fp: FeaturePass, features, n_bins: int = 20) -> pd.DataFrame:
    """Histogram of each feature's non-zero activations, n_bins equal bins on (0, max]."""
    out = []
    feats, vals = fp.feature.numpy(), fp.value.numpy()
    for f in np.asarray(features):
        v = vals[feats == f]
        if v.size == 0:
            continue
        counts, edges = np.histogram(v, bins=n_bins, range=(0.0, float(v.max())))
        out.append(pd.DataFrame({"feature": int(f), "bin_left": edges[:-1],
                                 "bin_right": edges[1:], "count": counts}))
    cols = ["feature", "bin_left", "bin_right", "count"]
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)


def dfa_heads(fp: FeaturePass, sae, layer: int, features) -> pd.DataFrame:
    """Mean per-head DFA term on active tokens, its share, and the weight-based share."""
    feats = torch.as_tensor(np.asarray(features)).long()
    n = fp.n_active[feats].clamp_min(1)[:, None]
    value = (fp.dfa_sum[feats] / n).float()  # (feature, head)
    share = value / value.sum(1, keepdim=True)
    n_heads = value.shape[1]
    w = sae.W_dec.detach()[feats.to(sae.W_dec.device)].cpu().reshape(len(feats), n_heads, -1)
    wn = w.norm(dim=-1)  # (feature, head)
    weight_share = wn / wn.sum(1, keepdim=True).clamp_min(1e-12)
    f_idx, h_idx = torch.meshgrid(torch.arange(len(feats)), torch.arange(n_heads), indexing="ij")
    return pd.DataFrame({
        "feature": feats[f_idx.reshape(-1)].numpy(), "layer": int(layer),
        "head": h_idx.reshape(-1).numpy(), "value": value.reshape(-1).numpy(),
        "share": share.reshape(-1).numpy(), "weight_share": weight_share.reshape(-1).numpy(),
        "n_active": fp.n_active[feats][f_idx.reshape(-1)].numpy().astype(int),
    })


@torch.no_grad()
def logit_effects(loaded: LoadedModel, sae, layer: int, features, n_top=10) -> pd.DataFrame:
    """Top promoted / suppressed tokens of each feature's decoder direction (decoders)."""
    cols = ["feature", "direction", "rank", "token", "value"]
    model = loaded.model
    if loaded.kind != "decoder" or not hasattr(model, "W_U"):
        return pd.DataFrame(columns=cols)
    feats = torch.as_tensor(np.asarray(features)).long()
    n_heads = int(model.cfg.n_heads)
    d = sae.W_dec.detach()[feats.to(sae.W_dec.device)].reshape(len(feats), n_heads, -1)
    # (feature, d_model): each decoder direction written through W_O
    resid = torch.einsum("fhd,hdm->fm", d.to(model.W_O.dtype), model.W_O[layer])
    ln = getattr(model, "ln_final", None)
    if model.cfg.normalization_type in ("LN", "LNPre"):
        resid = resid - resid.mean(-1, keepdim=True)  # LayerNorm removes the mean
    if ln is not None and hasattr(ln, "w"):
        resid = resid * ln.w
    logits = (resid @ model.W_U).float().cpu()  # (feature, d_vocab)
    k = min(n_top, logits.shape[1])
    out = []
    for direction, largest in (("promoted", True), ("suppressed", False)):
        top = torch.topk(logits, k, dim=1, largest=largest)
        for i, f in enumerate(feats.tolist()):
            ids = top.indices[i].tolist()
            out.append(pd.DataFrame({
                "feature": f, "direction": direction, "rank": range(k),
                "token": _token_strings(loaded, ids), "value": top.values[i].numpy(),
            }))
    return pd.concat(out, ignore_index=True)


def _token_strings(loaded: LoadedModel, ids: list[int]) -> list[str]:
    tok = loaded.tokenizer
    if tok is None:
        return [str(i) for i in ids]
    return [str(t) for t in tok.convert_ids_to_tokens(ids)]


def feature_tables(
    loaded: LoadedModel, sae, layer: int, tokens: Tokens, features=None, n_top: int = 10,
    n_bins: int = 20, batch_size: int = 32, impl: str = "auto", n_bands: int = 4,
    per_band: int = 3,
) -> FeatureTables:
    """All feature tables for `features` (default: every feature active on `tokens`)."""
    check_sae_fits(sae, loaded.model, layer)
    fp = collect(loaded, sae, layer, tokens, batch_size, impl)
    if features is None:
        features = torch.nonzero(fp.n_active > 0).flatten().tolist()
    heads = dfa_heads(fp, sae, layer, features)
    summary, per_head = head_summary(heads, sae, layer)
    return FeatureTables(
        top_examples(fp, tokens, features, n_top),
        band_examples(fp, tokens, features, n_bands, per_band),
        histogram(fp, features, n_bins), heads,
        logit_effects(loaded, sae, layer, features, n_top), summary, per_head,
    )


#: Run table name of each :class:`FeatureTables` field (``attnlab sae features``, the demo).
FEATURE_TABLES = {
    "top_examples": "sae_feature_examples", "bands": "sae_feature_bands",
    "histogram": "sae_feature_hist",
    "dfa_heads": "sae_feature_heads", "logit_effects": "sae_logit_effects",
    "head_summary": "sae_head_summary", "head_features": "sae_head_features",
}
