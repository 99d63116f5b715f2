"""Exact activation patching (Heimersheim & Nanda 2024; Zhang & Nanda 2024), batched.

Denoising runs the corrupted prompt and patches in one clean activation (does this component
suffice to restore the behaviour?); noising runs the clean prompt and patches in one corrupted
activation (is it necessary?). The metric is any function of the model output (logits for a
decoder, final hidden state for an encoder) returning a scalar or one value per prompt, e.g.
the logit difference; effects are also reported on the normalised scale where 0 is the
corrupted run and 1 the clean run:

    effect = m(patched) - m(baseline run)        normalized_effect = effect / (m_clean - m_corr)

(for denoising, normalized_effect = (m_patched - m_corr) / (m_clean - m_corr), docs/METHODS.md §4).

Why not ``transformer_lens.patching``: it runs one full forward pass per component. Here a sweep
is a few batched passes that start at the patched layer (:mod:`analyses.causal.batched`), with
the same results (tests compare every granularity against it to 1e-4 in fp32).

    >>> pair = PatchPair(clean_ids, corrupted_ids, metric=my_logit_diff, task="ioi")
    >>> res = patch(model, pair, PatchingConfig(component="z"))
    >>> res.values.shape        # like get_act_patch_attn_head_out_all_pos: (layer, head)
    >>> res.table               # tidy, schema `patching` (data.schemas)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens.utils import get_act_name

from analyses.causal.batched import (
    Runner,
    patched_metrics,
    reduce_metric,
    resid_name,
    rows_per_pass,
)
from analyses.causal.fast import (
    FAST_COMPONENTS,
    DecoderMath,
    FastDecoder,
    baseline_names,
    component_heads,
    fast_patched_metrics,
    first_difference,
    unsupported_reason,
)
from probes.hooks import record
from probes.models import is_encoder, unwrap

RESID_LIKE = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
HEAD_VECTORS = ("z", "q", "k", "v")
COMPONENTS = RESID_LIKE + HEAD_VECTORS + ("pattern",)
METHODS = ("denoising", "noising")
ENGINES = ("auto", "fast", "hooks")
Metric = Callable[[torch.Tensor], torch.Tensor]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchingConfig:
    """One patching sweep: which activations, at what granularity, in which direction."""

    component: str = "z"  # one of COMPONENTS (z = each head's output, per head)
    per_position: bool = False  # also split by (query/destination) position
    method: str = "denoising"  # denoising: clean -> corrupted run; noising: the reverse
    layers: tuple[int, ...] | None = None  # layers to sweep (None = all)
    memory_budget_mb: float = 256.0  # transient activation memory of one batched pass
    engine: str = "auto"  # fast (analyses.causal.fast) | hooks | auto: fast where it applies

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine {self.engine!r} unknown; choose from {ENGINES}")
        if self.component not in COMPONENTS:
            raise ValueError(f"component {self.component!r} unknown; choose from {COMPONENTS}")
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} unknown; choose from {METHODS}")
        if self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")
        if self.layers is not None and not self.layers:
            raise ValueError("layers is empty: pass None for all layers or some layer indices")


@dataclass(frozen=True)
class PatchPair:
    """Clean and corrupted prompts (token-aligned, equal length) and the metric to patch."""

    clean: torch.Tensor  # (batch, pos) long
    corrupted: torch.Tensor  # (batch, pos) long
    metric: Metric  # output (batch, pos, ...) -> scalar or (batch,)
    task: str = "custom"  # name for the tables
    metric_name: str = "logit_diff"
    attention_mask: torch.Tensor | None = None  # (batch, pos), encoders with padding only
    # (batch,) long: the one position per prompt that the metric reads. When set, the metric
    # is handed the output at these positions only, (batch, ...) without the pos axis, and
    # the fast engine computes the last block there only.
    score_pos: torch.Tensor | None = None
    # Optional: rows -> the metric of the prompts at those rows alone (it gets their output,
    # (rows, ...), and returns one value per prompt there). Chunked attribution
    # (analyses.causal.attribution) scores a chunk with it; without it, the chunk's output is
    # zero-padded to the full batch for ``metric``. pair_from_task sets it.
    metric_rows: Callable[[slice], Metric] | None = None

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupted.shape or self.clean.ndim != 2:
            raise ValueError(
                f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} "
                "token tensors must both be (batch, pos) with equal shapes: patching needs "
                "token-aligned pairs (pad or choose corruptions of equal length)"
            )
        if not callable(self.metric):
            raise ValueError("metric must be a function of the model output")
        if self.metric_rows is not None and not callable(self.metric_rows):
            raise ValueError("metric_rows must be a function of a slice of prompt rows "
                             "returning their metric, or None")
        if self.score_pos is not None:
            sp = self.score_pos
            if sp.shape != (self.batch,) or sp.dtype != torch.long or \
                    int(sp.min()) < 0 or int(sp.max()) >= self.n_pos:
                raise ValueError(f"score_pos must be (batch={self.batch},) long positions in "
                                 f"[0, {self.n_pos}), got {tuple(sp.shape)} {sp.dtype}")

    def score(self, output: torch.Tensor) -> torch.Tensor:
        """The metric of a full output (batch, pos, ...), taken at ``score_pos`` when set."""
        if self.score_pos is None:
            return self.metric(output)
        rows = torch.arange(output.shape[0], device=output.device)
        return self.metric(output[rows, self.score_pos.to(output.device)])

    @property
    def batch(self) -> int:
        return int(self.clean.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean.shape[1])


def pair_from_task(dataset, metric: Metric | None = None) -> PatchPair:
    """A :class:`PatchPair` from a ``data.tasks.TaskDataset`` (metric: its logit difference).

    The metric sees the output rows of the dataset in order, so any function of
    ``(logits, dataset)`` can be wrapped the same way. With the default metric the pair also
    scores any rows alone (``metric_rows``: the logit difference of those rows' answers), so
    chunked attribution never builds a full-batch output.
    """
    from data.tasks import logit_diff

    if metric is not None:
        return PatchPair(dataset.clean_tokens, dataset.corrupted_tokens, metric,
                         task=dataset.name, metric_name="custom")

    def metric_rows(rows: slice) -> Metric:
        part = dataset.rows(rows)
        return lambda logits: logit_diff(logits, part)

    return PatchPair(dataset.clean_tokens, dataset.corrupted_tokens,
                     lambda logits: logit_diff(logits, dataset), task=dataset.name,
                     score_pos=dataset.last_pos, metric_rows=metric_rows)



class Baselines(NamedTuple):
    """The clean and corrupted runs: metric values and the activations a sweep needs."""

    clean_metric: float
    corrupted_metric: float
    clean_acts: dict[str, torch.Tensor]
    corrupted_acts: dict[str, torch.Tensor]
    clean_out: torch.Tensor | None = None  # output (batch, pos, ...); fast engine with
    # score_pos: (batch, ...) at the scored positions
    corrupted_out: torch.Tensor | None = None


class PatchingResult(NamedTuple):
    table: pd.DataFrame  # schema `patching`, plus patched_metric and metric columns
    values: torch.Tensor  # patched metric, shaped like transformer_lens.patching's output
    clean_metric: float
    corrupted_metric: float
    engine: str = "hooks"  # which engine ran the sweep: fast | hooks (attribution: n/a)


def make_runner(model, pair: PatchPair) -> Runner:
    return Runner(model, is_encoder(model), pair.attention_mask)


def hook_name(component: str, layer: int) -> str:
    return get_act_name(component, layer)


def run_baselines(runner: Runner, pair: PatchPair, names: list[str]) -> Baselines:
    """Forward the clean and corrupted prompts once each, recording ``names``."""
    model = runner.model
    clean_out, clean_acts = record(model, names, lambda: runner.full(pair.clean))
    corr_out, corr_acts = record(model, names, lambda: runner.full(pair.corrupted))
    return Baselines(
        float(reduce_metric(pair.score(clean_out))), float(reduce_metric(pair.score(corr_out))),
        clean_acts, corr_acts, clean_out, corr_out,
    )


def fast_baselines(math: DecoderMath, pair: PatchPair, names: set[str]) -> Baselines:
    """:func:`run_baselines` on the fast engine's plain forward pass (same activations).

    Clean and corrupted prompts run as one batch of 2 * batch rows; with ``score_pos`` set,
    the outputs are the logits at those positions only, (batch, d_vocab), and the metric reads
    them as is.
    """
    device, b = math.cfg.device, pair.batch
    tokens = torch.cat([pair.clean, pair.corrupted]).to(device)  # (2 * batch, pos)
    scored = pair.score_pos is not None
    out, acts = math.forward(tokens, names, pair.score_pos.repeat(2) if scored else None)
    clean_acts = {name: act[:b] for name, act in acts.items()}
    corr_acts = {name: act[b:] for name, act in acts.items()}
    score = pair.metric if scored else pair.score
    return Baselines(
        float(reduce_metric(score(out[:b]))), float(reduce_metric(score(out[b:]))),
        clean_acts, corr_acts, out[:b], out[b:],
    )


# ----------------------------------------------------------------------------- patch masks


def patch_masks(component: str, per_position: bool, n_pos: int, n_heads: int) -> torch.Tensor:
    """One boolean mask per patch over an activation without its batch axis.

    Patches are enumerated in transformer_lens.patching's index order; trailing size-1 axes
    broadcast (e.g. over d_head). Shapes: resid-like (patch, pos, 1); head vectors
    (patch, pos, head, 1); pattern (patch, head, pos, 1).
    """
    eye_pos = torch.eye(n_pos, dtype=torch.bool)
    eye_head = torch.eye(n_heads, dtype=torch.bool)
    if component in RESID_LIKE:
        if per_position:
            return eye_pos[:, :, None]  # (pos, pos, 1)
        return torch.ones(1, n_pos, 1, dtype=torch.bool)
    if component in HEAD_VECTORS:
        if per_position:  # order (pos, head), like get_act_patch_attn_head_out_by_pos
            m = eye_pos[:, None, :, None] & eye_head[None, :, None, :]  # (pos, head, pos, head)
            return m.reshape(n_pos * n_heads, n_pos, n_heads, 1)
        return eye_head[:, None, :, None].expand(n_heads, n_pos, n_heads, 1)
    if per_position:  # pattern, order (head, pos)
        m = eye_head[:, None, :, None] & eye_pos[None, :, None, :]  # (head, pos, head, pos)
        return m.reshape(n_heads * n_pos, n_heads, n_pos, 1)
    return eye_head[:, :, None, None]  # (head, head, 1, 1)


def index_shape(component: str, per_position: bool, n_pos: int, n_heads: int) -> tuple:
    """Per-layer index shape of the result, as in transformer_lens.patching."""
    if component in RESID_LIKE:
        return (n_pos,) if per_position else ()
    if component in HEAD_VECTORS:
        return (n_pos, n_heads) if per_position else (n_heads,)
    return (n_heads, n_pos) if per_position else (n_heads,)


# ----------------------------------------------------------------------------- sweep


def patch(model, pair: PatchPair, config: PatchingConfig, progress: bool = False):
    """Exact activation patching of every component in ``config`` (batched; see module doc).

    Returns a :class:`PatchingResult` whose ``values`` equal the corresponding
    ``transformer_lens.patching`` function's output for the same metric. Causal decoders
    that :func:`analyses.causal.fast.unsupported_reason` accepts (GPT-2- and Llama-style,
    SmolLM2 included) run on :mod:`analyses.causal.fast` (``config.engine`` "auto" or
    "fast"), everything else on the hook engine of :mod:`analyses.causal.batched`. With
    grouped-query attention, ``k``/``v`` patches are per key/value head (``values`` has
    ``n_key_value_heads`` columns; TransformerLens' own head patchers index query heads there
    and cannot run), ``z``/``q`` patches per query head.
    """
    model = unwrap(model)
    check_length(model, pair)
    runner = make_runner(model, pair)
    layers = _layers(config, runner.n_layers)
    fast = _use_fast(model, config)
    n_heads = component_heads(model.cfg, config.component)
    masks = patch_masks(config.component, config.per_position, pair.n_pos, n_heads)
    scored = fast and pair.score_pos is not None
    max_rows = rows_per_pass(model, pair.n_pos, config.memory_budget_mb, scored)
    with torch.no_grad():
        sweep = _fast_sweep if fast else _hook_sweep
        base, layer_metrics = sweep(runner, pair, config, layers, masks, max_rows)
        per_layer = [layer_metrics(layer) for layer in
                     tqdm(layers, desc=f"patch {config.component}", disable=not progress)]
    shape = index_shape(config.component, config.per_position, pair.n_pos, n_heads)
    values = torch.stack(per_layer).reshape(len(layers), *shape)  # (layer, ...): TL's layout
    table = effects_table(values, layers, pair, config, base)
    return PatchingResult(table, values, base.clean_metric, base.corrupted_metric,
                          "fast" if fast else "hooks")


def _hook_sweep(runner: Runner, pair: PatchPair, config: PatchingConfig, layers, masks,
                max_rows: int):
    """(baselines, layer -> (patch,) metrics) on the hook engine."""
    names = {hook_name(config.component, la) for la in layers} | {resid_name(la) for la in layers}
    base = run_baselines(runner, pair, sorted(names))
    src, dst = _direction(base, config.method)

    def layer_metrics(layer: int) -> torch.Tensor:
        name = hook_name(config.component, layer)
        return patched_metrics(runner, name, layer, dst[resid_name(layer)], src[name],
                               masks.to(src[name].device), pair.score, max_rows)

    return base, layer_metrics


def _fast_sweep(runner: Runner, pair: PatchPair, config: PatchingConfig, layers, masks,
                max_rows: int):
    """(baselines, layer -> (patch,) metrics) on the fast engine."""
    math = DecoderMath(runner.model)
    names = {hook_name(config.component, la) for la in layers}
    names |= set(baseline_names(math.cfg, config.component, layers))
    base = fast_baselines(math, pair, names)
    src, dst = _direction(base, config.method)
    dst_out = base.corrupted_out if config.method == "denoising" else base.clean_out
    p0 = first_difference(pair.clean, pair.corrupted, pair.score_pos)
    engine = FastDecoder(math, dst, None if pair.score_pos is not None else dst_out, p0,
                         pair.score_pos)

    def layer_metrics(layer: int) -> torch.Tensor:
        name = hook_name(config.component, layer)
        # the engine's output is already taken at score_pos: the metric, not pair.score
        return fast_patched_metrics(engine, config.component, layer, src[name], dst[name],
                                    masks.to(src[name].device), pair.metric, max_rows)

    return base, layer_metrics


def check_length(model, pair: PatchPair) -> None:
    """A clear error for prompts longer than a decoder's context (TransformerLens' rotary
    tables and positional embeddings have ``n_ctx`` rows; past them it fails obscurely)."""
    n_ctx = model.cfg.n_ctx
    if not is_encoder(model) and pair.n_pos > n_ctx:
        raise ValueError(f"prompts have {pair.n_pos} tokens, more than the model's context of "
                         f"{n_ctx} (n_ctx): shorten them to {n_ctx} tokens or fewer")


def _use_fast(model, config: PatchingConfig) -> bool:
    """Whether the sweep runs on the fast engine; "fast" on an unsupported model is an error."""
    if config.engine == "hooks":
        return False
    why = unsupported_reason(model)
    if why is None and config.component not in FAST_COMPONENTS:
        why = f"component {config.component!r} is not one of {FAST_COMPONENTS}"
    if why is not None and config.engine == "fast":
        raise ValueError(f"the fast patching engine cannot run this sweep: {why}; "
                         "use engine='auto' or 'hooks'")
    return why is None


def _layers(config: PatchingConfig, n_layers: int) -> list[int]:
    layers = list(range(n_layers)) if config.layers is None else list(config.layers)
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise ValueError(f"layers {bad} out of range: the model has {n_layers} layers")
    return layers


def _direction(base: Baselines, method: str):
    """(source activations, activations of the run being patched)."""
    if method == "denoising":
        return base.clean_acts, base.corrupted_acts
    return base.corrupted_acts, base.clean_acts


def effects_table(values, layers, pair: PatchPair, config: PatchingConfig, base: Baselines,
                  method: str | None = None, baseline_metric: float | None = None):
    """Tidy `patching` table from per-layer patched metric values (TL-shaped)."""
    method = method or config.method
    gap = base.clean_metric - base.corrupted_metric
    if abs(gap) < 0.05 * max(abs(base.clean_metric), abs(base.corrupted_metric), 1.0):
        log.warning("%s: clean (%.4g) and corrupted (%.4g) metrics nearly agree: normalised "
                    "effects divide by a tiny gap and are unreliable", pair.task,
                    base.clean_metric, base.corrupted_metric)
    flat = values.reshape(len(layers), -1).cpu()  # (layer, patch)
    patches = ((config.component, layer, *_head_position(config, i, pair.n_pos, flat.shape[1]),
                value)
               for li, layer in enumerate(layers) for i, value in enumerate(flat[li].tolist()))
    return patching_table(pair, base, method, patches, baseline_metric)


TABLE_COLUMNS = ["task", "component", "layer", "head", "position", "effect",
                 "normalized_effect", "method", "patched_metric", "metric"]


def patching_table(pair: PatchPair, base: Baselines, method: str, patches,
                   baseline_metric: float | None = None, **columns) -> pd.DataFrame:
    """The `patching` table: one row per patch, effects against the run that was patched.

    ``patches``: (component, layer, head, position, patched metric) per row. The baseline is
    the corrupted run's metric for (attribution) denoising, the clean run's for noising, unless
    ``baseline_metric`` is given. ``columns`` adds constant columns (path patching's
    ``receivers``).
    """
    if baseline_metric is None:
        denoise = method.endswith("denoising")
        baseline_metric = base.corrupted_metric if denoise else base.clean_metric
    gap = base.clean_metric - base.corrupted_metric
    rows = []
    for component, layer, head, position, value in patches:
        effect = value - baseline_metric
        rows.append((pair.task, component, layer, head, position, effect,
                     effect / gap if gap else float("nan"), method, value, pair.metric_name))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.assign(**columns) if columns else table


def _head_position(config: PatchingConfig, i: int, n_pos: int, n_idx: int) -> tuple[int, int]:
    c, per_pos = config.component, config.per_position
    if c in RESID_LIKE:
        return -1, (i if per_pos else -1)
    if c in HEAD_VECTORS:
        n_heads = n_idx // n_pos if per_pos else n_idx
        return (i % n_heads, i // n_heads) if per_pos else (i, -1)
    return (i // n_pos, i % n_pos) if per_pos else (i, -1)
