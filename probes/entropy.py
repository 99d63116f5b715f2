"""Attention entropy per head and query, with Zhai et al. (2023)'s lower bound.

Entropy of head h at query i: H_i = -sum_j A_ij log A_ij over the keys i may attend to (causal
mask and padding mask); normalised: H_i / log(n_allowed_keys(i)) (log(i+1) for a causal model;
queries with a single allowed key have H = 0 and no normalised value).

Zhai et al. 2023 ("Stabilizing Transformer Training by Preventing Attention Entropy Collapse",
Thm 3.1): the entropy of a softmax over T logits whose centred vector has norm s is at least

    bound(s, T) = log(1 + (T-1) b) + s sqrt(T (T-1)) b / (1 + (T-1) b),  b = exp(-s sqrt(T/(T-1)))

(the minimum sits at one logit above T-1 equal ones). Two ways to get s, both reported:

- per query, from the actual logits (``hook_attn_scores``): s_i = ||a_i - mean(a_i)|| over the
  allowed keys. Then H_i >= bound(s_i, n_i) holds exactly, on every query.
- from the weights (the paper's version): s = sigma * sigma_x with sigma = ||W~_Q W_K^T||_2 /
  attn_scale and sigma_x = ||X~ X~^T||_2 over the sequence's attention inputs X. The query bias
  is folded in as W~_Q = [W_Q; b_Q], X~ = [X, 1] (the key bias only shifts a query's logits by a
  constant, which softmax ignores), so s >= s_i and bound(s, n_i) is a valid, looser bound.
- rotary positions (Llama, SmolLM2) rotate q_i and k_j by position-dependent rotations, so the
  logits are no longer x~_i^T M x~_j for one matrix M and the Gram form above is *not* a bound
  (tests/probes/test_probes_gqa.py has a 3-token counterexample). What holds is
  |a_ij| <= ||q_i|| ||k_j|| / attn_scale, hence s_i <= ||W~_Q||_2 ||W~_K||_2 / attn_scale *
  max_i ||x~_i|| ||X~||_F, with W~_K = [W_K; b_K] (a rotated key bias is not constant in j).

Attention inputs X are ``ln1(resid_pre)`` of a pre-norm decoder (LayerNorm or RMSNorm, with its
weight), the block input itself for BERT. With grouped-query attention (GQA) TransformerLens
stores one W_K per key/value head (``attn._W_K``, (kv_head, d_model, d_head)); query head h uses
KV head h // (head / kv_head) (``repeat_interleave``, as the ``W_K`` property and the forward
do). The hooks already carry one pattern per query head.

TransformerLens has the patterns but no entropy statistics; this module adds them as a
streaming accumulator (memory independent of the number of prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from probes.accumulators import HookPlan, Reservoir, RunningMoments

QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}


@dataclass(frozen=True)
class EntropyConfig:
    """Settings of the entropy probe."""

    collapse_threshold: float = 0.1  # a head is "collapsed" if mean normalised entropy < this
    weight_bound: bool = True  # also compute the weight-based (spectral norm) bound
    reservoir_size: int = 4096  # per-head sample size for streaming quantiles
    bound_tol: float = 1e-4  # float32 slack when counting bound violations (nats)
    seed: int = 0  # reservoir sampling seed

    def __post_init__(self) -> None:
        if not 0.0 < self.collapse_threshold < 1.0:
            raise ValueError(f"collapse_threshold must be in (0, 1), got {self.collapse_threshold}")
        if self.reservoir_size < 1:
            raise ValueError(f"reservoir_size must be >= 1, got {self.reservoir_size}")
        if self.bound_tol < 0:
            raise ValueError(f"bound_tol must be >= 0, got {self.bound_tol}")


def entropy_bound(s: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Zhai et al. Thm 3.1: min entropy of softmax(a) over n logits with ||a - mean a|| = s.

    Elementwise over broadcast ``s`` and ``n`` (float64 result; 0 where n <= 1).
    """
    s = torch.as_tensor(s, dtype=torch.float64)
    n = torch.as_tensor(n, dtype=torch.float64, device=s.device)
    n_safe = n.clamp_min(2.0)
    beta = torch.exp(-s * torch.sqrt(n_safe / (n_safe - 1)))
    denom = 1 + (n_safe - 1) * beta
    out = torch.log1p((n_safe - 1) * beta) + s * torch.sqrt(n_safe * (n_safe - 1)) * beta / denom
    return torch.where(n > 1, out, torch.zeros_like(out))


def allowed_keys(mask: torch.Tensor | None, batch: int, q: int, k: int, causal: bool,
                 device: torch.device) -> torch.Tensor:
    """(batch, 1, pos, key_pos) bool: the keys each query may attend to (padding, causal mask)."""
    keys = (torch.ones(batch, k, dtype=torch.bool, device=device) if mask is None
            else mask.bool().to(device))
    allowed = keys[:, None, None, :].expand(batch, 1, q, k)
    if causal:
        allowed = allowed & torch.ones(q, k, dtype=torch.bool, device=device).tril()
    return allowed


def query_entropy(pattern: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(batch, head, pos, key_pos) probabilities -> (batch, head, pos) entropy over allowed keys."""
    plogp = torch.special.xlogy(pattern, pattern).masked_fill_(~allowed, 0.0)
    return -plogp.sum(-1)


def centred_logit_norm(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(batch, head, pos, key_pos) logits -> (batch, head, pos): ||a_i - mean(a_i)||.

    Over the allowed keys only (the mean too).
    """
    n = allowed.sum(-1).clamp_min(1)  # (batch, 1, pos)
    a = scores.masked_fill(~allowed, 0.0)
    mean = a.sum(-1) / n  # (batch, head, pos)
    dev = (a - mean[..., None]).masked_fill_(~allowed, 0.0)
    return dev.square_().sum(-1).double().sqrt()  # float32 sum of <= T squares: rel. err ~1e-6


def _key_weights(attn: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """W_K (kv_head, d_model, d_head) and b_K (kv_head, d_head) as stored, and query heads per KV.

    GQA (``GroupedQueryAttention``) stores one key projection per KV head in ``_W_K``/``_b_K``;
    its ``W_K`` property repeats them per query head. Plain attention has one per query head.
    """
    if hasattr(attn, "_W_K") and hasattr(attn, "repeat_kv_heads"):
        return attn._W_K, attn._b_K, int(attn.repeat_kv_heads)
    return attn.W_K, attn.b_K, 1


def _r_factor(w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """(head, d_model, d_head) weight and (head, d_head) bias -> R of the thin QR of [W; b].

    ||A B^T||_2 = ||R_A R_B^T||_2 and ||A||_2 = ||R_A||_2: a (d_head, d_head) problem per head
    instead of a (d_model + 1, d_model + 1) one. ``b`` None: the QR of W alone.
    """
    aug = w.detach().double()
    if b is not None:
        aug = torch.cat([aug, b.detach().double()[:, None, :]], 1)
    return torch.linalg.qr(aug).R  # (head, d_head, d_head)


def is_rotary(model: Any) -> bool:
    """Whether the model rotates q and k by position (then the weight bound takes Frobenius)."""
    return getattr(model.cfg, "positional_embedding_type", "standard") == "rotary"


def head_logit_sigma(model: Any, layer: int) -> torch.Tensor | None:
    """(head,) sigma_h of the weight bound (module docstring), or None where it is no bound.

    Standard positions: sigma_h = ||[W_Q; b_Q] W_K^T||_2 / attn_scale (the key bias drops out).
    Rotary: sigma_h = ||[W_Q; b_Q]||_2 ||[W_K; b_K]||_2 / attn_scale (rotations have norm 1;
    pair it with :func:`input_rotary_norm`). With GQA, head h's keys are KV head h // group.
    Other position schemes (ALiBi, relative bias), QK-norm, log-n query scaling and attention
    sinks change the logits in ways the weights alone do not bound: None.
    """
    cfg = model.cfg
    pos_type = getattr(cfg, "positional_embedding_type", "standard")
    if (pos_type not in ("standard", "shortformer", "rotary") or getattr(cfg, "use_qk_norm", False)
            or getattr(cfg, "use_logn_attn", False)
            or getattr(cfg, "use_attention_sinks", False)):
        return None
    attn = model.blocks[layer].attn
    r_q = _r_factor(attn.W_Q, attn.b_Q)  # (head, d_head, d_head)
    w_k, b_k, group = _key_weights(attn)
    if pos_type == "rotary":
        r_k = _r_factor(w_k, b_k)  # (kv_head, d_head, d_head)
        k_norm = torch.linalg.matrix_norm(r_k, 2).repeat_interleave(group)  # (head,)
        sig = torch.linalg.matrix_norm(r_q, 2) * k_norm
    else:
        r_k = _r_factor(w_k).repeat_interleave(group, dim=0)  # (head, d_head, d_head); b_K
        # only shifts a query's logits by a constant here
        sig = torch.linalg.matrix_norm(r_q @ r_k.transpose(1, 2), 2)
    return sig / float(attn.attn_scale)


def _augmented_inputs(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, pos, d_model) -> (batch, pos, d_model + 1) X~ = [X, 1], padded rows zeroed."""
    x = x.float()
    ones = torch.ones(*x.shape[:2], 1, dtype=x.dtype, device=x.device)
    xt = torch.cat([x, ones], -1)  # (batch, pos, d_model + 1)
    if mask is not None:
        xt = xt * mask.to(xt.device, xt.dtype)[..., None]
    return xt


def input_gram_norm(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, pos, d_model) attention inputs -> (batch,) sigma_x = ||X~ X~^T||_2, X~ = [X, 1].

    Padded rows are zeroed, so each sequence's value covers its real tokens only.
    """
    xt = _augmented_inputs(x, mask)
    small = xt @ xt.transpose(1, 2) if xt.shape[1] <= xt.shape[2] else xt.transpose(1, 2) @ xt
    # Gram in float32 (the costly part), eigenvalues in float64; the 1e-5 relative margin
    # keeps sigma_x an upper bound despite float32 rounding (so the bound stays valid).
    return torch.linalg.eigvalsh(small.double())[:, -1].clamp_min(0.0) * (1 + 1e-5)


def input_rotary_norm(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(batch, pos, d_model) -> (batch,) max_i ||x~_i|| * ||X~||_F, the rotary sigma_x.

    Over each sequence's real rows (module docstring: with rotary positions the Gram norm is
    not a bound). Row norms in float64, so no rounding margin is needed beyond 1e-9.
    """
    sq = _augmented_inputs(x, mask).double().square().sum(-1)  # (batch, pos)
    return (sq.amax(-1) * sq.sum(-1)).sqrt() * (1 + 1e-9)


class EntropyAccumulator:
    """Streaming entropy statistics of one layer's heads (see the module docstring).

    Register it (via :func:`entropy_hooks`) on ``blocks.L.hook_resid_pre`` (weight bound only),
    ``blocks.L.attn.hook_attn_scores`` and ``blocks.L.attn.hook_pattern``; they fire in that
    order within a forward pass.
    """

    def __init__(self, model: Any, layer: int, config: EntropyConfig = EntropyConfig()):
        self.layer, self.config = layer, config
        self.n_heads = model.cfg.n_heads
        self.causal = model.cfg.attention_dir == "causal"
        self.sigma = head_logit_sigma(model, layer) if config.weight_bound else None
        self._input_norm = input_rotary_norm if is_rotary(model) else input_gram_norm
        # Attention input X: a pre-LN decoder normalises resid_pre with ln1; BERT (HookedEncoder)
        # feeds resid_pre (already post-LN) to attention directly.
        from transformer_lens import HookedTransformer

        self._ln = model.blocks[layer].ln1 if isinstance(model, HookedTransformer) else None
        self.m = {k: RunningMoments(name=k) for k in
                  ("H", "Hnorm", "s", "bound", "gap", "ws", "wbound", "wgap")}
        self.res = Reservoir(self.n_heads, config.reservoir_size, config.seed)
        self.violations = torch.zeros(self.n_heads, dtype=torch.float64)
        self.w_violations = torch.zeros(self.n_heads, dtype=torch.float64)
        self._sigma_x: torch.Tensor | None = None
        self._s: torch.Tensor | None = None

    def hook_names(self) -> list[str]:
        names = [f"blocks.{self.layer}.attn.hook_attn_scores",
                 f"blocks.{self.layer}.attn.hook_pattern"]
        if self.sigma is not None:
            names.insert(0, f"blocks.{self.layer}.hook_resid_pre")
        return names

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        hook = ctx.get("hook", "")
        if hook.endswith("hook_resid_pre"):
            x = self._ln(tensor) if self._ln is not None else tensor  # (batch, pos, d_model)
            self._sigma_x = self._input_norm(x, mask)
        elif hook.endswith("hook_attn_scores"):
            b, _, q, k = tensor.shape
            self._s = centred_logit_norm(tensor, allowed_keys(mask, b, q, k, self.causal,
                                                              tensor.device))
        elif hook.endswith("hook_pattern"):
            self._reduce(tensor, mask)
        else:
            raise ValueError(f"EntropyAccumulator got an unexpected hook {hook!r}")

    def _reduce(self, pattern: torch.Tensor, mask: torch.Tensor | None) -> None:
        b, _, q, k = pattern.shape
        allowed = allowed_keys(mask, b, q, k, self.causal, pattern.device)
        if self._s is None:
            raise RuntimeError("hook_attn_scores did not fire before hook_pattern; register "
                               "both hooks of EntropyAccumulator.hook_names()")
        ent = query_entropy(pattern, allowed).double()  # (batch, head, pos)
        n_keys = allowed.sum(-1).double()  # (batch, 1, pos)
        real_q = (torch.ones(b, q, dtype=torch.bool, device=pattern.device) if mask is None
                  else mask.bool().to(pattern.device))  # (batch, pos)
        rows = lambda t: t.expand(b, self.n_heads, q).permute(0, 2, 1)[real_q]  # (n, head)
        h, n, s = rows(ent), rows(n_keys), rows(self._s)
        bound = entropy_bound(s, n)
        self.m["H"].add(h)
        self.res.add(h.T)
        multi = n[:, 0] > 1  # queries with >= 2 allowed keys have a normalised entropy
        self.m["Hnorm"].add(h[multi] / n[multi].log())
        self.m["s"].add(s)
        self.m["bound"].add(bound)
        self.m["gap"].add(h - bound)
        self.violations += (h < bound - self.config.bound_tol).sum(0).cpu()
        if self.sigma is not None and self._sigma_x is not None:
            # (batch, 1, head)
            ws = self.sigma.to(h.device)[None, None, :] * self._sigma_x[:, None, None]
            ws = ws.expand(b, q, self.n_heads)[real_q]  # (n, head)
            wbound = entropy_bound(ws, n)
            self.m["ws"].add(ws)
            self.m["wbound"].add(wbound)
            self.m["wgap"].add(h - wbound)
            self.w_violations += (h < wbound - self.config.bound_tol).sum(0).cpu()
        self._s = self._sigma_x = None

    def result(self) -> pd.DataFrame:
        """Long table: layer, head, stat, value (stats listed in data.schemas 'entropy')."""
        H = self.m["H"].moments()
        stats = {"mean": H.mean, "std": H.std, "min": H.min, "max": H.max,
                 "n_queries": torch.full_like(H.mean, float(H.count))}
        qs = self.res.quantiles(list(QUANTILES.values()))  # (head, quantile)
        stats.update({name: qs[:, i] for i, name in enumerate(QUANTILES)})
        if self.m["Hnorm"].count:
            hn = self.m["Hnorm"].moments()
            stats.update(norm_mean=hn.mean, norm_min=hn.min,
                         collapsed=(hn.mean < self.config.collapse_threshold).double())
        stats.update(logit_norm_mean=self.m["s"].moments().mean,
                     bound_mean=self.m["bound"].moments().mean,
                     bound_min_gap=self.m["gap"].moments().min, bound_violations=self.violations)
        if self.m["ws"].count:
            stats.update(weight_sigma=self.sigma.double().cpu(),
                         weight_s_mean=self.m["ws"].moments().mean,
                         weight_bound_mean=self.m["wbound"].moments().mean,
                         weight_bound_min_gap=self.m["wgap"].moments().min,
                         weight_bound_violations=self.w_violations)
        frames = [pd.DataFrame({"layer": self.layer, "head": range(self.n_heads), "stat": name,
                                "value": v.detach().cpu().double().numpy()})
                  for name, v in stats.items()]
        return pd.concat(frames, ignore_index=True)


def entropy_hooks(model: Any, layers: list[int] | None = None,
                  config: EntropyConfig = EntropyConfig()) -> HookPlan:
    """One :class:`EntropyAccumulator` per layer and the ``{hook: acc}`` map for capture."""
    layers = list(range(model.cfg.n_layers)) if layers is None else layers
    accs = [EntropyAccumulator(model, layer, config) for layer in layers]
    return HookPlan({name: acc for acc in accs for name in acc.hook_names()}, accs)
