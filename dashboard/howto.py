"""What a page needs and how to produce it: the exact CLI command for every table.

Pages never show a traceback for an empty store, a corrupt run or a missing table: they call
:func:`show_missing` / :func:`show_store_error`, which say what is missing and print the
command that writes it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import streamlit as st

from data.store import CorruptFile, StoreError, TableNotFound


class Producer(NamedTuple):
    """The command that writes a table, and what the table holds."""

    command: str  # exact shell command
    what: str  # one line for the reader


_SAE = "attnlab sae features --model organism --layer 1"
SAE_TRAIN = "attnlab sae train --model organism --layer 1 --arch topk --d-sae 2048"
ORGANISM_TRAIN = "attnlab organism train"
_REDUNDANCY = "attnlab redundancy --model organism --strategy joint --max-drop 4 --heads"
CIRCUIT_REPORT = "attnlab report circuit --model organism --task ioi"
_PROBE = "attnlab probe --model minilm --prompts builtin --what entropy,massive,norms"

PRODUCERS: dict[str, Producer] = {
    "entropy": Producer(_PROBE, "attention entropy per head with the Zhai et al. lower bound"),
    "massive": Producer(_PROBE, "massive activations (Sun et al. 2024) per layer/token/dim"),
    "massive_summary": Producer(_PROBE, "per-layer top-1/top-2/median residual magnitudes"),
    "head_norms": Producer(_PROBE, "per-head attention output norms"),
    **{name: Producer("attnlab probe --model minilm --prompts builtin --what sinks", what)
       for name, what in [
           ("sinks", "attention to position 0 and to the first delimiter per head (Gu et al.)"),
           ("sink_rate", "share of heads with sink score > epsilon, per layer and overall")]},
    "redundancy": Producer(_REDUNDANCY, "similarity-based importance of attention/MLP/blocks"),
    **{name: Producer(_SAE, what) for name, what in [
        ("sae_feature_examples", "top-activating examples of each SAE feature"),
        ("sae_feature_hist", "activation histograms of SAE features"),
        ("sae_feature_heads", "direct feature attribution of SAE features to heads"),
        ("sae_logit_effects", "tokens each SAE feature promotes or suppresses"),
        ("sae_head_summary", "per-head polysemanticity of an attention SAE"),
        ("sae_head_features", "the features each head drives")]},
    "sae_eval": Producer("attnlab sae eval --model organism --layer 1",
                         "SAE quality: L0, explained variance, CE loss recovered"),
    "organism_dynamics": Producer(ORGANISM_TRAIN, "the organism's per-checkpoint training "
                                  "dynamics (loss, accuracy, massive ratio, entropy)"),
    **{name: Producer(_REDUNDANCY, what) for name, what in [
        ("drop_curve", "task metrics after dropping 0, 1, 2 ... modules"),
        ("speedup", "measured wall-time speedup of the pruned model"),
        ("head_importance", "per-head ablation and first-order importance"),
        ("head_importance_corr", "rank correlation of ablation and Taylor head importance")]},
    **{name: Producer(CIRCUIT_REPORT, what) for name, what in [
        ("patching", "activation and attribution patching effects"),
        ("impairment", "task accuracy with the top recall/reasoning heads ablated"),
        ("circuit_roles", "head roles found by path patching"),
        ("circuit_sae_features", "SAE features the circuit's top heads drive")]},
}

#: Shown with every "nothing here yet" message: one command fills every page.
DEMO_COMMAND = "attnlab demo"
#: Tables ``attnlab demo`` writes (analyses.cli.demo, small samples); the organism's
#: dynamics are shipped with it, not written by the demo.
DEMO_TABLES = frozenset(PRODUCERS) - {"organism_dynamics"}


#: Commands that differ for SmolLM2 beyond the model name: it has no shipped SAE (train one
#: first, then describe it), 30 layers (layer 15 is mid-depth) and its own redundancy
#: defaults (strategies attn mlp joint, 8 drops), which the organism's flags would override.
SMOLLM2_SAE = ("attnlab sae train --model smollm2 --layer 15 --arch topk --d-sae 2304 --k 64\n"
               "attnlab sae features --model smollm2 --layer 15 --sae <that run>/sae")
_SMOLLM2 = {
    **dict.fromkeys(["sae_feature_examples", "sae_feature_hist", "sae_feature_heads",
                     "sae_logit_effects", "sae_head_summary", "sae_head_features"],
                    SMOLLM2_SAE),
    "sae_eval": "attnlab sae eval --model smollm2 --layer 15 --sae <run>/sae",
    **dict.fromkeys(["redundancy", "drop_curve", "speedup", "head_importance",
                     "head_importance_corr"], "attnlab redundancy --model smollm2 --heads"),
}
_MODEL_FLAG = re.compile(r"--model \S+")


def producer(table: str) -> Producer:
    """The producer of ``table``; unknown tables point at ``attnlab demo``."""
    return PRODUCERS.get(table, Producer(DEMO_COMMAND, f"table {table!r}"))


def command_for(table: str, model: str | None) -> str:
    """The exact command that writes ``table`` for ``model`` (the default one without a model).

    A page showing a run of one model names that model's command, never another model's.
    Tables only the organism has (its training dynamics) keep their command.
    """
    cmd = producer(table).command
    if not model or "--model" not in cmd:
        return cmd
    if model == "smollm2" and table in _SMOLLM2:
        return _SMOLLM2[table]
    return _MODEL_FLAG.sub(f"--model {model}", cmd)


def show_missing(table: str, detail: str | None = None) -> None:
    """Say that no completed run holds ``table``, and how to write one."""
    p = producer(table)
    st.info(
        f"No completed run in the store holds the table **{table}** ({p.what}). "
        "Produce it with the command below, then reload this page."
        + (f"\n\n{detail}" if detail else "")
    )
    st.code(p.command, language="bash")
    if table in DEMO_TABLES:
        st.caption(f"`{DEMO_COMMAND}` writes the tables of every page (small samples, about a "
                   "minute on a laptop CPU); the command above runs this analysis in full.")


def show_store_error(exc: StoreError, table: str | None = None,
                     model: str | None = None) -> None:
    """Explain a store error (corrupt manifest/table, missing table) with the fixing command
    (``model``'s own command when the run's model is known)."""
    if isinstance(exc, TableNotFound):
        head = "The run lists this table but its file is missing."
    elif isinstance(exc, CorruptFile):
        head = "This run has a corrupt file."
    else:
        head = "The run store could not be read."
    st.warning(f"{head}\n\n{exc}")
    if table is not None:
        st.caption("Re-create the table with:")
        st.code(command_for(table, model), language="bash")


def show_empty_store(root: str) -> None:
    """The store has no runs at all."""
    st.info(f"The run store `{root}` has no runs yet. Write one with the command below "
            "(about a minute on a laptop CPU), then reload this page.")
    st.code(f"{DEMO_COMMAND} --runs-dir {root}", language="bash")
