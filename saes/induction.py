"""Find induction heads two independent ways: attention scores, and SAE features via DFA.

Kissane et al. 2024 identify induction heads from attention-SAE features: features that fire
on the second copy of a repeated token and whose DFA comes from heads attending to the token
after the previous occurrence. On repeated random sequences [bos, r_1..r_N, r_1..r_N]:

- `induction_scores`: the classic, SAE-free score of each head, the mean attention from a
  second-copy token at q = N + i to the token after its previous occurrence (q - N + 1);
- `dfa_induction`: per layer, features are *induction-like* when their mean activation on
  second-copy tokens is >= `ratio` x that on first-copy tokens and >= `ratio` x that at the
  same positions of unrepeated random sequences (so position alone does not qualify a
  feature); each head gets the fraction of its positive DFA mass on second-copy tokens that
  goes to induction-like features (`dfa_frac`), its share of the layer's induction-like DFA
  mass (`dfa_share`), and the fraction of its induction-like DFA that comes from the source
  position q - N + 1 (`source_frac`, via the exact source split of `saes.attribution`).

    data = induction_data(candidate_ids, n=32, half=10, bos_id=1, seed=0)
    table = induction_table(loaded, {layer: sae, ...}, data)   # layer, head, scores, selected
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd
import torch
from torch import Tensor

from probes.models import LoadedModel
from probes.tokens import Tokens
from saes.activations import record_tokens
from saes.attribution import dfa_by_head, dfa_by_source
from saes.encode import encode


class InductionData(NamedTuple):
    """Repeated random sequences and same-length unrepeated controls."""

    repeated: Tensor  # (batch, pos), pos = [1 +] 2 * half: half random ids, then the same again
    control: Tensor  # (batch, pos): 2 * half distinct random ids (no repeat)
    half: int


def induction_data(pool: Tensor, n: int, half: int, bos_id: int | None, seed: int = 0):
    """`InductionData` drawn from the candidate token ids `pool`."""
    if half < 2 or len(pool) < 2 * half:
        raise ValueError(f"need half >= 2 and at least {2 * half} candidate tokens")
    g = torch.Generator().manual_seed(seed)
    draws = [pool[torch.randperm(len(pool), generator=g)[: 2 * half]] for _ in range(2 * n)]
    rows = torch.stack(draws[:n])[:, :half]
    out = [torch.cat([rows, rows], 1), torch.stack(draws[n:])]  # (batch, pos) each, pos = 2 * half
    if bos_id is not None:
        out = [torch.cat([torch.full((n, 1), int(bos_id)), x], 1) for x in out]
    return InductionData(out[0], out[1], half)


def _as_tokens(ids: Tensor) -> Tokens:
    mask = torch.ones_like(ids)
    return Tokens(ids, mask, mask.sum(1), [[str(i) for i in row] for row in ids.tolist()])


def _positions(ids: Tensor, half: int) -> tuple[Tensor, Tensor]:
    """First-copy and second-copy positions of the repeated block (after an optional bos)."""
    start = ids.shape[1] - 2 * half
    return torch.arange(start, start + half), torch.arange(start + half, start + 2 * half)


@torch.no_grad()
def induction_scores(loaded: LoadedModel, ids: Tensor, half: int) -> Tensor:
    """(layer, head) mean attention from second-copy q to q - half + 1 (SAE-free)."""
    names = [f"blocks.{la}.attn.hook_pattern" for la in range(loaded.cfg.n_layers)]
    got = record_tokens(loaded, _as_tokens(ids), names)
    _, second = _positions(ids, half)
    target = second - half + 1
    return torch.stack([got[n][:, :, second, target].mean(dim=(0, 2)).cpu() for n in names])


def _induction_features(acts: Tensor, ctrl: Tensor, first, second, ratio: float) -> Tensor:
    """Features whose mean activation on second-copy tokens is >= ratio x both their mean on
    the first copy and at the same positions of unrepeated sequences (position controlled)."""
    m2 = acts[:, second].mean((0, 1))
    m1, mc = acts[:, first].mean((0, 1)), ctrl[:, second].mean((0, 1))
    return torch.nonzero((m2 > ratio * m1) & (m2 > ratio * mc) & (m2 > 0)).flatten()


def _source_frac(sae, got, names, ind, active, second, half) -> Tensor:
    """Per head: fraction of its induction-feature DFA from source q - half + 1."""
    src = dfa_by_source(sae, got[names[1]], got[names[2]], ind, query_pos=second)
    # (batch, pos, key_pos, head, feature), pos: the second copy's positions
    parts = src.per_source.clamp_min(0) * active[..., ind][:, :, None]
    on_target = parts[:, torch.arange(half), second - half + 1].sum((0, 1, 3))  # (head,)
    return (on_target / parts.sum((0, 1, 2, 4)).clamp_min(1e-12)).cpu()


@torch.no_grad()
def dfa_induction(loaded: LoadedModel, sae, layer: int, data: InductionData,
                  ratio: float = 3.0) -> pd.DataFrame:
    """Per head of `layer`: dfa_frac, dfa_share and source_frac (module docstring)."""
    names = [f"blocks.{layer}.attn.hook_{n}" for n in ("z", "pattern", "v")]
    got = record_tokens(loaded, _as_tokens(data.repeated), names)
    z = got[names[0]]  # (batch, pos, head, d_head)
    z_ctrl = record_tokens(loaded, _as_tokens(data.control), names[:1])[names[0]]
    first, second = _positions(data.repeated, data.half)
    acts = encode(sae, z).acts  # (batch, pos, d_sae)
    ind = _induction_features(acts, encode(sae, z_ctrl).acts, first, second, ratio)
    # per_head and active keep only the second copy's positions (pos has size half)
    per_head = dfa_by_head(sae, z[:, second]).per_head.clamp_min(0)  # (batch, pos, head, d_sae)
    active = (acts[:, second] > 0).to(per_head.dtype)[:, :, None, :]  # (batch, pos, 1, d_sae)
    mass = (per_head * active).sum((0, 1))  # (head, d_sae)
    ind_mass = mass[:, ind].sum(1)  # (head,)
    n_heads = z.shape[2]
    source = torch.zeros(n_heads)
    if len(ind):
        source = _source_frac(sae, got, names, ind, active, second, data.half)
    return pd.DataFrame({
        "layer": layer, "head": range(n_heads),
        "dfa_frac": (ind_mass / mass.sum(1).clamp_min(1e-12)).cpu().numpy(),
        "dfa_share": (ind_mass / ind_mass.sum().clamp_min(1e-12)).cpu().numpy(),
        "source_frac": source.numpy(), "n_induction_features": len(ind),
    })


def induction_table(loaded: LoadedModel, saes: dict[int, object], data: InductionData,
                    min_share: float = 0.2, min_source: float = 0.5) -> pd.DataFrame:
    """Both scores for every head of the layers in `saes`; `selected` = chosen by DFA alone
    (dfa_share >= min_share and source_frac >= min_source), never by the induction score.

    Feature firing alone does not single out induction heads: in the layers above them many
    features also fire mostly on second copies (they read the induction heads' output), and
    their heads take most of that DFA mass. What marks the heads that *do* induction is where
    their induction-feature DFA comes from, the token after the previous occurrence (Kissane
    et al.'s source-position DFA), so selection requires both."""
    scores = induction_scores(loaded, data.repeated, data.half)
    tables = [dfa_induction(loaded, sae, layer, data) for layer, sae in saes.items()]
    df = pd.concat(tables, ignore_index=True)
    df["induction_score"] = [float(scores[la, h]) for la, h in zip(df.layer, df["head"])]
    df["selected"] = (df.dfa_share >= min_share) & (df.source_frac >= min_source)
    return df
