"""Export an SAE's feature data in SAEDashboard's Neuronpedia JSON format.

Neuronpedia imports the batch files that SAEDashboard's ``NeuronpediaRunner`` writes
(``batch-<i>.json``, each a ``NeuronpediaDashboardBatch.to_dict()`` of
``sae_dashboard/neuronpedia/neuronpedia_dashboard.py``, plus ``skipped_indexes.json``). This
module writes the same files from attnlab's feature tables (:mod:`saes.features`), so an
attnlab SAE can be viewed there without running SAEDashboard's own pipeline, which would
recompute everything on a HookedTransformer and cannot load the organism or MiniLM.

What is filled, and from where (field names are SAEDashboard's):

- ``activations``: the top examples, each the example's whole prompt with the feature's
  activation at every token (re-encoded here: ``feature_tables`` keeps one value per example),
  in the "TOP ACTIVATIONS" bin (``bin_min`` -1, ``bin_max`` the largest activation,
  ``bin_contains`` -1, as SAEDashboard's converter writes it); ``qualifying_token_index`` is the
  example's position in ``tokens`` (no BOS is dropped: the tokens are the prompt's own).
- ``pos_str``/``pos_values``, ``neg_str``/``neg_values``: promoted / suppressed tokens of the
  logit effects (decoders; empty for an encoder).
- ``freq_hist_data_bar_values``/``_heights``: bin centres and counts of the non-zero
  activation histogram; ``frac_nonzero``: the share of scanned tokens where it is active.
- ``decoder_weights_dist``: the decoder's weight share per head (SAEDashboard's
  ``allocation_by_head`` for attention SAEs).
- ``neuron_alignment_*``: the 3 input dimensions of the largest |decoder weight|, their
  values and their share of the row's L1 norm (SAEDashboard's definition).

Left at SAEDashboard's empty defaults: correlated neurons/features and the logits histogram
(attnlab does not compute them) and ``vector`` (vector runs only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from data.store import atomic_write_text
from probes.tokens import Tokens
from saes.activations import hook_z_name, record_tokens
from saes.encode import encode

DECIMALS = 5  # SAEDashboard's FeatureProcessor.round_list
N_ALIGNMENT = 3  # neuron_alignment entries per feature, as SAEDashboard computes
TOP_BIN = {"bin_min": -1, "bin_contains": -1}  # SAEDashboard's "TOP ACTIVATIONS" bin


class ExportMeta(NamedTuple):
    """What Neuronpedia files the features under."""

    model_id: str  # Neuronpedia model id (attnlab: the model's name)
    layer: int
    sae_set: str  # e.g. "attnlab-att" (SAEDashboard's np_set_name / sae_set)
    dataset: str  # where the examples come from
    sae_id_suffix: str | None = None


def _round(values) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=np.float64), DECIMALS)]


def _subset(tokens: Tokens, rows: list[int]) -> Tokens:
    idx = torch.as_tensor(rows, dtype=torch.long)
    return Tokens(tokens.ids[idx], tokens.attention_mask[idx], tokens.lengths[idx],
                  [tokens.str_tokens[i] for i in rows])


@torch.no_grad()
def prompt_activations(loaded, sae, layer: int, tokens: Tokens, prompts: list[int],
                       batch_size: int = 32) -> dict[int, torch.Tensor]:
    """prompt index -> the SAE's activations at its real tokens, (pos, d_sae) on the CPU."""
    out: dict[int, torch.Tensor] = {}
    for start in range(0, len(prompts), batch_size):
        rows = prompts[start : start + batch_size]
        tb = _subset(tokens, rows)
        z = record_tokens(loaded, tb, [hook_z_name(layer)])[hook_z_name(layer)]
        acts = encode(sae, z).acts.float().cpu()  # (batch, pos, d_sae)
        for i, p in enumerate(rows):
            out[p] = acts[i, : int(tb.lengths[i])]
    return out


def neuron_alignment(w_dec_row: torch.Tensor) -> dict[str, list]:
    """The input dimensions a feature's decoder row writes most to (SAEDashboard's
    ``neuron_alignment_*``: top |weight|, the weights, and their share of the row's L1)."""
    row = w_dec_row.detach().float().cpu()
    top = row.abs().topk(min(N_ALIGNMENT, row.numel())).indices
    l1 = float(row.abs().sum()) or 1.0
    return {"neuron_alignment_indices": [int(i) for i in top],
            "neuron_alignment_values": _round(row[top].numpy()),
            "neuron_alignment_l1": _round(row[top].abs().numpy() / l1)}


def _activations(examples, acts: dict[int, torch.Tensor], tokens: Tokens,
                 feature: int) -> list[dict[str, Any]]:
    """``NeuronpediaDashboardActivation.to_dict()`` of each top example (no DFA fields)."""
    top = float(round(float(examples.activation.max()), DECIMALS)) if len(examples) else 0.0
    return [{"bin_min": TOP_BIN["bin_min"], "bin_max": top,
             "bin_contains": TOP_BIN["bin_contains"],
             "tokens": list(tokens.str_tokens[int(r.prompt_idx)]),
             "values": _round(acts[int(r.prompt_idx)][:, feature].numpy()),
             "qualifying_token_index": int(r.pos)} for r in examples.itertuples()]


def feature_record(feature: int, ft, acts, tokens: Tokens, sae, n_tokens: int,
                   meta: ExportMeta) -> dict[str, Any]:
    """One feature as SAEDashboard's ``NeuronpediaDashboardFeature.to_dict()``."""
    ex = ft.top_examples[ft.top_examples.feature == feature].sort_values("rank")
    hist = ft.histogram[ft.histogram.feature == feature]
    logits = ft.logit_effects[ft.logit_effects.feature == feature] \
        if len(ft.logit_effects) else ft.logit_effects
    heads = ft.dfa_heads[ft.dfa_heads.feature == feature].sort_values("head")

    def effects(direction: str):
        rows = logits[logits.direction == direction].sort_values("rank") if len(logits) \
            else logits
        return ([str(t) for t in rows.token] if len(rows) else [],
                _round(rows.value) if len(rows) else [])

    pos_str, pos_values = effects("promoted")
    neg_str, neg_values = effects("suppressed")
    centres = ((hist.bin_left + hist.bin_right) / 2).to_numpy()
    return {
        "feature_index": int(feature),
        **neuron_alignment(sae.W_dec[feature]),
        "correlated_neurons_indices": [], "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [], "correlated_features_indices": [],
        "correlated_features_l1": [], "correlated_features_pearson": [],
        "neg_str": neg_str, "neg_values": neg_values,
        "pos_str": pos_str, "pos_values": pos_values,
        "frac_nonzero": float(hist["count"].sum()) / max(n_tokens, 1),
        "freq_hist_data_bar_values": _round(centres),
        "freq_hist_data_bar_heights": _round(hist["count"].to_numpy()),
        "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [],
        "n_prompts_total": len(tokens.str_tokens),
        "n_tokens_in_prompt": int(tokens.ids.shape[1]),
        "dataset": meta.dataset,
        "decoder_weights_dist": _round(heads.weight_share) if len(heads) else [],
        "activations": _activations(ex, acts, tokens, feature),
        "vector": [],
    }


def neuronpedia_batches(loaded, sae, layer: int, tokens: Tokens, ft, meta: ExportMeta,
                        per_file: int = 128) -> list[dict[str, Any]]:
    """``NeuronpediaDashboardBatch.to_dict()``s of the features in ``ft`` (``per_file`` each)."""
    features = sorted(int(f) for f in ft.top_examples.feature.unique())
    acts = prompt_activations(loaded, sae, layer, tokens,
                              sorted(int(p) for p in ft.top_examples.prompt_idx.unique()))
    n_tokens = int(tokens.attention_mask.sum())
    records = [feature_record(f, ft, acts, tokens, sae, n_tokens, meta) for f in features]
    return [{"model_id": meta.model_id, "layer": int(meta.layer), "sae_set": meta.sae_set,
             "sae_id_suffix": meta.sae_id_suffix, "features": records[i : i + per_file]}
            for i in range(0, len(records), per_file)]


def write_export(out: str | Path, batches: list[dict[str, Any]], meta: ExportMeta,
                 skipped: list[int], n_tokens: int) -> list[Path]:
    """``batch-<i>.json`` per batch and ``skipped_indexes.json`` (the features left out: never
    active on the ``n_tokens`` scanned tokens), as SAEDashboard's runner names and fills them
    (its ``log_sparsity`` is the log10 density below which features were skipped: here
    log10(1 / n_tokens), the lowest density the scan can see); written atomically."""
    out = Path(out)
    paths = [atomic_write_text(out / f"batch-{i}.json", json.dumps(b))
             for i, b in enumerate(batches)]
    paths.append(atomic_write_text(out / "skipped_indexes.json", json.dumps(
        {"model_id": meta.model_id, "layer": str(meta.layer), "sae_set": meta.sae_set,
         "log_sparsity": float(np.round(-np.log10(max(n_tokens, 1)), 3)),
         "skipped_indexes": [int(i) for i in skipped]})))
    return paths
