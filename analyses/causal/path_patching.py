"""Path patching head -> head (Wang et al. 2022, "Interpretability in the Wild", §3.1).

A sender head's output is patched only along the paths into chosen receivers: the receiver
heads' query/key/value inputs, or the logits (the direct path). Two passes per sender:

1. run the base prompt with every head's output ``z`` frozen at its base-run value, except the
   sender's, which takes the source run's value; record the receivers' q/k/v (or, for the
   logits receiver, the output itself);
2. run the base prompt again with only the receivers' q/k/v replaced by the recorded values.

MLPs are recomputed in pass 1 by default (as in Wang et al., so paths through MLPs count);
``freeze_mlps=True`` freezes them too, leaving only the direct head -> receiver path.
Senders are batched like :mod:`analyses.causal.patching` (one row group per sender head).

The direct path to the logits with MLPs frozen needs no pass through the blocks: with every
head's ``z`` and every MLP output frozen at the base run, the final residual stream is the base
run's plus the sender's change of output, ``(z_src - z_base) W_O``, so only the final norm and
the unembedding run (at ``score_pos`` when the pair has one). On a 30-layer model this turns
minutes into seconds; models with a norm after the attention output (``ln1_post``) take the
two-pass route, as do encoders (BERT normalises after each residual add).

Denoising: base = corrupted, source = clean. Noising (Wang et al.'s own direction, with the
"ABC" corruption as the source): base = clean, source = corrupted.

TransformerLens has no path patching; this module reuses its hook points only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from analyses.causal.batched import reduce_metric, resid_name, rows_per_pass
from analyses.causal.patching import (
    METHODS,
    PatchPair,
    make_runner,
    patching_table,
    run_baselines,
    unwrap,
)
from data.notation import head_label
from probes.hooks import record, scoped_hooks

LOGITS = "logits"


@dataclass(frozen=True)
class Receiver:
    """A receiver head and which of its inputs receive the sender's output."""

    layer: int
    head: int
    inputs: tuple[str, ...] = ("q", "k", "v")  # a subset of q, k, v

    def __post_init__(self) -> None:
        if not self.inputs or set(self.inputs) - {"q", "k", "v"}:
            raise ValueError(f"receiver inputs must be a non-empty subset of q, k, v: "
                             f"got {self.inputs}")

    def label(self) -> str:
        """``L2H0(q)``: the head (data.notation) and the inputs that receive."""
        return f"{head_label(self.layer, self.head)}({''.join(self.inputs)})"


@dataclass(frozen=True)
class PathPatchingConfig:
    """Senders (all heads below the last receiver layer by default) -> receivers."""

    receivers: tuple[Receiver, ...] = ()  # empty = the logits (direct path)
    method: str = "noising"  # noising (Wang et al.) or denoising
    freeze_mlps: bool = False  # True: MLPs frozen too, only direct head->receiver paths
    memory_budget_mb: float = 256.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} unknown; choose from {METHODS}")

    def label(self) -> str:
        return LOGITS if not self.receivers else " ".join(r.label() for r in self.receivers)


def path_patch(model, pair: PatchPair, config: PathPatchingConfig, progress: bool = False):
    """Effect of each sender head's path into the receivers: a `patching` table.

    Rows: component ``path_z``, the sender's layer/head, position -1, plus a ``receivers``
    column. Senders at or above every receiver's layer have no path and are left out.
    """
    model = unwrap(model)
    runner = make_runner(model, pair)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    top = n_layers if not config.receivers else max(r.layer for r in config.receivers)
    for r in config.receivers:
        if not (0 <= r.layer < n_layers and 0 <= r.head < n_heads):
            raise ValueError(f"receiver {r.label()} is not a head of this model "
                             f"({n_layers} layers x {n_heads} heads)")
    senders = [(layer, head) for layer in range(top) for head in range(n_heads)]
    if not senders:
        raise ValueError("no sender heads: receivers in layer 0 have no heads upstream")
    names = [f"blocks.{la}.attn.hook_z" for la in range(n_layers)]
    names += [f"blocks.{la}.hook_mlp_out" for la in range(n_layers)]
    names += [resid_name(la) for la in range(n_layers)]
    closed = _closed_form(runner, config)
    names += [_final_name(n_layers)] if closed else []
    max_rows = rows_per_pass(model, pair.n_pos, config.memory_budget_mb)
    per_chunk = max(1, max_rows // pair.batch)
    chunk_metrics = _direct_metrics if closed else _chunk_metrics
    values = []
    with torch.no_grad():
        base = run_baselines(runner, pair, names)
        src, dst = ((base.clean_acts, base.corrupted_acts) if config.method == "denoising"
                    else (base.corrupted_acts, base.clean_acts))
        for start in tqdm(range(0, len(senders), per_chunk), desc="path patch",
                          disable=not progress):
            chunk = senders[start : start + per_chunk]
            values += chunk_metrics(runner, pair, config, chunk, src, dst)
    patches = (("path_z", layer, head, -1, value) for (layer, head), value in zip(senders, values))
    return patching_table(pair, base, config.method, patches, receivers=config.label())


def _chunk_metrics(runner, pair, config, chunk, src, dst) -> list[float]:
    """Pass 1 (frozen, sender patched) then pass 2 (receivers' inputs patched) for a chunk."""
    model, n, batch = runner.model, len(chunk), pair.batch
    first = min([layer for layer, _ in chunk] + [r.layer for r in config.receivers])
    hooks = [_freeze_z_hook(model, layer, chunk, src, dst, batch)
             for layer in range(first, model.cfg.n_layers)]
    if config.freeze_mlps:
        hooks += [(f"blocks.{la}.hook_mlp_out", _constant_hook(dst[f"blocks.{la}.hook_mlp_out"], n))
                  for la in range(first, model.cfg.n_layers)]
    inputs = sorted({_input_name(r, x) for r in config.receivers for x in r.inputs})
    resid = dst[resid_name(first)].repeat(n, 1, 1)  # (rows, pos, d_model)
    output, recorded = record(model, inputs, lambda: runner.from_layer(resid, first, n), hooks)
    if config.receivers:
        output = _receiver_pass(runner, config, recorded, dst, n)
    return [float(reduce_metric(pair.score(output[g * batch : (g + 1) * batch])))
            for g in range(n)]


def _final_name(n_layers: int) -> str:
    return f"blocks.{n_layers - 1}.hook_resid_post"


def _closed_form(runner, config: PathPatchingConfig) -> bool:
    """Whether the direct path is the base run's final residual plus the sender's output.

    True for pre-norm decoders; an encoder (BERT normalises after each residual add) and a
    model with a norm on the attention output (``ln1_post``) take the two passes.
    """
    post_norm = getattr(runner.model.cfg, "use_normalization_before_and_after", False)
    return not (config.receivers or not config.freeze_mlps or runner.encoder or post_norm)


def _direct_metrics(runner, pair, config, chunk, src, dst) -> list[float]:
    """The logits receiver with MLPs frozen: final norm + unembedding of resid + dz W_O."""
    model, batch = runner.model, pair.batch
    final = dst[_final_name(model.cfg.n_layers)]  # (batch, pos, d_model)
    rows = torch.arange(batch, device=final.device)
    scored = pair.score_pos is not None
    if scored:  # only the scored positions reach the metric
        final = final[rows, pair.score_pos.to(final.device)][:, None]  # (batch, 1, d_model)
    resids = []
    for layer, head in chunk:
        name = f"blocks.{layer}.attn.hook_z"
        dz = src[name][:, :, head] - dst[name][:, :, head]  # (batch, pos, d_head)
        if scored:
            dz = dz[rows, pair.score_pos.to(dz.device)][:, None]  # (batch, 1, d_head)
        resids.append(final + dz @ model.blocks[layer].attn.W_O[head])
    output = runner.from_layer(torch.cat(resids), model.cfg.n_layers, len(chunk))
    metric = (lambda out: pair.metric(out[:, 0])) if scored else pair.score
    return [float(reduce_metric(metric(output[g * batch : (g + 1) * batch])))
            for g in range(len(chunk))]


def _receiver_pass(runner, config, recorded, dst, n) -> torch.Tensor:
    """Pass 2: the base run with only the receivers' q/k/v taken from pass 1."""
    first = min(r.layer for r in config.receivers)
    hooks = {}
    for name, heads in _receiver_heads(config).items():
        mask = torch.zeros(runner.model.cfg.n_heads, dtype=torch.bool)
        mask[heads] = True
        hooks[name] = _splice_hook(recorded[name], mask[:, None])
    resid = dst[resid_name(first)].repeat(n, 1, 1)
    with scoped_hooks(runner.model, hooks):
        return runner.from_layer(resid, first, n)


def _receiver_heads(config) -> dict[str, list[int]]:
    heads: dict[str, list[int]] = {}
    for r in config.receivers:
        for x in r.inputs:
            heads.setdefault(_input_name(r, x), []).append(r.head)
    return heads


def _input_name(r: Receiver, x: str) -> str:
    return f"blocks.{r.layer}.attn.hook_{x}"


def _freeze_z_hook(model, layer, chunk, src, dst, batch):
    """z at ``layer``: base value for every head, the source value for each row's sender."""
    name = f"blocks.{layer}.attn.hook_z"
    # (patch, 1, 1, head, 1): True at row group g's sender head, if it sits in this layer
    mask = torch.zeros(len(chunk), 1, 1, model.cfg.n_heads, 1, dtype=torch.bool)
    for g, (s_layer, s_head) in enumerate(chunk):
        mask[g, 0, 0, s_head, 0] = s_layer == layer
    src_z, dst_z = src[name][None], dst[name][None]  # (1, batch, pos, head, d_head)

    def hook(act: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.to(act.device), src_z, dst_z).reshape(act.shape)

    return name, hook


def _constant_hook(value: torch.Tensor, repeats: int):
    def hook(act: torch.Tensor) -> torch.Tensor:
        return value.repeat(repeats, *([1] * (value.ndim - 1)))

    return hook


def _splice_hook(recorded: torch.Tensor, head_mask: torch.Tensor):
    """Replace the masked heads' entries of a (rows, pos, head, d_head) activation."""

    def hook(act: torch.Tensor) -> torch.Tensor:
        return torch.where(head_mask.to(act.device), recorded, act)

    return hook
