"""The one module that owns the schemas of attnlab's result tables.

Every analysis returns a long-format (tidy) pandas DataFrame: one row per
(layer, head, position, metric ...) and a single numeric ``value``-like column where
possible. Tables are saved as ``runs/<run-id>/tables/<name>.parquet`` by
:mod:`data.store`, which validates a table against its schema here when one exists.

Add a table by adding one ``TableSchema`` entry to ``SCHEMAS``; everyone else imports it.
Columns map to a one-line description (units, meaning); extra columns are allowed (they are
reported by :func:`missing_columns` only when required ones are absent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class TableSchema:
    """The documented columns of one result table."""

    name: str  # table name, also the Parquet file stem
    description: str  # what one row is
    columns: dict[str, str] = field(default_factory=dict)  # required column -> meaning

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"table name {self.name!r} must be a Python identifier")
        if not self.columns:
            raise ValueError(f"schema {self.name!r} declares no columns")


def _schema(name: str, description: str, **columns: str) -> TableSchema:
    return TableSchema(name=name, description=description, columns=columns)


SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in [
        _schema(
            "entropy",
            "One summary statistic of one head's attention entropy (Zhai et al. 2023); the run "
            "id is the run folder's.",
            model="model name", layer="layer index", head="head index",
            stat="mean | std | min | max | q05 | q25 | q50 | q75 | q95 | norm_mean | norm_min | "
            "logit_norm_mean | bound_mean | bound_min_gap | bound_violations | weight_sigma | "
            "weight_s_mean | weight_bound_mean | weight_bound_violations | n_queries | collapsed",
            value="value of the statistic (nats, or unitless when normalised)",
        ),
        _schema(
            "massive",
            "One massive activation (Sun et al. 2024): a residual-stream scalar above both "
            "thresholds.",
            layer="layer index", position="token position in the prompt",
            token="token string", dim="residual dimension", value="activation value",
            ratio="|value| / median |activation| of that layer's hidden state",
        ),
        _schema(
            "massive_summary",
            "Per-layer magnitude summary of the residual stream.",
            layer="layer index",
            stat="top1 | top2 | median | ratio (top1/median; each the mean over sequences) | "
            "top1_max | n_sequences", value="magnitude",
        ),
        _schema(
            "head_norms",
            "Norm statistics of one head's output z_h W_O^h (or one layer's attn_out).",
            layer="layer index", head="head index (-1 = whole attention layer)",
            stat="mean | std | min | max | count", value="L2 norm",
        ),
        _schema(
            "linear_probe",
            "One metric of a linear probe at one layer (Hewitt & Liang control task).",
            layer="layer index", hook="hook name probed",
            stat="train_acc | test_acc | control_train_acc | control_test_acc | selectivity | "
            "majority_acc | n_train | n_test", value="accuracy (fraction) or count",
        ),
        _schema(
            "patching",
            "Effect of patching one component (Heimersheim & Nanda; Zhang & Nanda).",
            task="task name",
            component="resid_pre | resid_mid | attn_out | mlp_out | z | q | k | v | pattern | "
            "path_z (path patching; see `receivers`)",
            layer="layer index", head="head index (-1 = n/a)",
            position="token position (-1 = all positions)",
            effect="metric(patched) - metric(baseline run)",
            normalized_effect="effect on the 0 (corrupted) .. 1 (clean) scale",
            method="denoising | noising | attribution_denoising | attribution_noising",
        ),
        _schema(
            "impairment",
            "Accuracy on one task with one head set ablated (analyses.causal.impairment).",
            task="evaluated task", ablated_set="top_<task> | random_<k>", k="heads in the set",
            accuracy="clean accuracy", accuracy_ablated="accuracy with the set ablated",
            drop="accuracy - accuracy_ablated (mean over sets for random_<k>)",
            drop_std="std of drop over random sets (0 for a single set)",
            heads="the set as 'layer.head ...'",
        ),
        _schema(
            "circuit_roles",
            "A head's role found by path patching (analyses.causal.ioi / analyses.causal.circuit).",
            role="name_mover | s_inhibition | induction_or_duplicate | direct_effect ...",
            layer="layer index", head="head index", effect="path-patching effect",
            normalized_effect="effect on the 0 (corrupted) .. 1 (clean) scale",
            receivers="the path's receivers ('logits' or 'L.H(qkv) ...')",
        ),
        _schema(
            "circuit_sae_features",
            "An SAE feature a top head drives at the scored position (mean DFA).",
            layer="attention layer", head="head index", feature="feature index",
            mean_dfa="mean direct feature attribution of the head", mean_act="mean activation",
        ),
        _schema(
            "redundancy",
            "Similarity-based importance of one module (He et al. 2024).",
            layer="layer index", module="attn | mlp | block",
            score="1 - mean cos(input, output) over calibration tokens",
        ),
        _schema(
            "drop_curve",
            "One metric of a model after n modules were dropped (analyses.redundancy.evaluation).",
            strategy="attn | mlp | block | joint", mode="one_shot | iterative | random",
            seed="random-baseline seed (-1 for score-based plans)",
            n_dropped="modules dropped so far", dropped="comma list, e.g. 'attn3,mlp1'",
            metric="lm_loss | acc_<task> | acc_mean | embedding_cos | nn_agreement | "
            "paraphrase_top1", value="metric value",
        ),
        _schema(
            "head_importance",
            "Drop in a task metric when one head is ablated, or its first-order estimate.",
            task="task name", metric="logit_diff | paraphrase_margin", layer="layer index",
            head="head index", method="zero | mean | taylor_zero | taylor_mean",
            value="M_clean - M_ablated (or the Taylor estimate of it)",
        ),
        _schema(
            "speedup",
            "Measured wall time of the pruned vs the full model on the same inputs (medians).",
            strategy="drop strategy", mode="plan mode", n_dropped="modules dropped",
            full_ms="median full forward (ms)", pruned_ms="median pruned forward (ms)",
            speedup="full_ms / pruned_ms", repeats="timed repeats per model",
        ),
        _schema(
            "sae_eval",
            "One quality metric of an attention SAE spliced into hook_z (saes.evaluate).",
            model="model name", layer="attention layer", sae="SAE path or 'shipped'",
            metric="l0 | explained_variance | mse | dead_frac | dense_frac | ce_clean | ce_sae "
            "| ce_zero_abl | ce_recovered | cos_sae | cos_zero_abl | n_tokens",
            value="value (NaN where not applicable: CE for encoders, cosine for decoders)",
        ),
        _schema(
            "sae_feature_examples",
            "One top-activating token of an SAE feature (saes.features).",
            feature="feature index", rank="0 = highest activation", activation="value",
            token="token string", context="tokens around it, the token as [[token]]",
            prompt_idx="prompt index in the scanned token set", pos="token position",
        ),
        _schema(
            "sae_feature_hist",
            "One histogram bin of an SAE feature's non-zero activations.",
            feature="feature index", bin_left="bin start", bin_right="bin end",
            count="activations in the bin",
        ),
        _schema(
            "sae_feature_heads",
            "Direct feature attribution of one feature to one head (Kissane et al. 2024).",
            feature="feature index", layer="attention layer", head="head index",
            value="mean DFA term of the head on tokens where the feature is active",
            share="value / sum over heads (shares sum to 1)",
            weight_share="||W_dec[f, head slice]|| / sum over heads",
        ),
        _schema(
            "sae_logit_effects",
            "A token an SAE feature's decoder direction promotes or suppresses (W_O, W_U).",
            feature="feature index", direction="promoted | suppressed",
            rank="0 = strongest", token="token string", value="direct logit effect",
        ),
        _schema(
            "sae_head_summary",
            "Per-head polysemanticity summary of an attention SAE (saes.heads).",
            layer="attention layer", head="head index",
            stat="n_features | n_families | effective_features", value="value",
        ),
        _schema(
            "sae_head_features",
            "A feature a head drives (DFA share >= 0.5), with its feature family.",
            layer="attention layer", head="head index", rank="0 = largest contribution mass",
            feature="feature index", share="DFA share of the head", family="family label",
        ),
        _schema(
            "organism_dynamics",
            "One measurement of the organism at one training checkpoint (data.organism.dynamics).",
            step="optimizer steps done", metric="loss | accuracy_<task> | massive_max | "
            "massive_ratio | entropy", layer="layer index (-1 = whole model)",
            head="head index (-1 = n/a)", value="value (nats, fraction or magnitude)",
        ),
    ]
}


def missing_columns(name: str, df: pd.DataFrame) -> list[str]:
    """Required columns of table ``name`` that ``df`` lacks ([] if no schema is declared)."""
    schema = SCHEMAS.get(name)
    if schema is None:
        return []
    return [c for c in schema.columns if c not in df.columns]


def validate(name: str, df: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the missing columns if ``df`` does not fit schema ``name``."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"table {name!r} must be a pandas DataFrame, got {type(df).__name__}")
    missing = missing_columns(name, df)
    if missing:
        raise ValueError(
            f"table {name!r} lacks required columns {missing}; schema: "
            f"{list(SCHEMAS[name].columns)} (see data/schemas.py)"
        )
