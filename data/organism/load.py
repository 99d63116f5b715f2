"""Shipped organism artefacts: write them after training, load them as a HookedTransformer.

Files (in ``data/organism/`` when shipped, or a training ``--out`` folder)::

    organism.safetensors       final weights, TransformerLens names, float32
    organism.json              architecture, model/training configs, world seed,
                               held-out accuracies, training time, parameter count
    vocab.json                 the word list (token id = index)
    organism_dynamics.parquet  per-checkpoint dynamics (table ``organism_dynamics``)

``load_organism()`` is what ``probes.models.load_model("organism")`` calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from transformer_lens import HookedTransformer

from data.organism.config import ModelConfig, TrainConfig
from data.organism.files import (  # noqa: F401  (re-exported)
    CONFIG_FILE,
    DYNAMICS_FILE,
    PACKAGE_DIR,
    SHIPPED,
    VOCAB_FILE,
    WEIGHTS_FILE,
    checkpoint_files,
)
from data.organism.model import hooked_config
from data.organism.vocab import build_tokenizer, load_vocab, save_vocab
from data.store import atomic_write_bytes, atomic_write_json

ARCHITECTURE = "attnlab-organism: TransformerLens HookedTransformer (LN, GELU)"


class OrganismArtefactError(RuntimeError):
    """Organism files exist but cannot be used (corrupt, truncated or inconsistent)."""


def assemble(state_dict: dict[str, torch.Tensor], model_config: ModelConfig,
             vocab: Sequence[str]) -> HookedTransformer:
    """A HookedTransformer (tokenizer set, eval mode) from weights + config + vocabulary."""
    model = HookedTransformer(hooked_config(model_config, len(vocab)))
    result = model.load_state_dict(state_dict, strict=False)
    buffers = ("attn.mask", "attn.IGNORE", "attn.rotary_sin", "attn.rotary_cos")
    missing = [k for k in result.missing_keys if not k.endswith(buffers)]
    if missing or result.unexpected_keys:
        raise OrganismArtefactError(
            f"organism weights do not fit the config: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}")
    model.set_tokenizer(build_tokenizer(vocab))
    return model.eval()


def write_artefacts(folder: Path, state_dict: dict[str, torch.Tensor], mc: ModelConfig,
                    tc: TrainConfig, vocab: Sequence[str], *, accuracies: dict[str, float],
                    train_seconds: float, dynamics: pd.DataFrame) -> None:
    """Write the four artefact files into ``folder`` (each atomically)."""
    n_params = sum(v.numel() for v in state_dict.values())
    config = {
        "architecture": ARCHITECTURE, "format_version": 1, "weights_file": WEIGHTS_FILE,
        "weights_dtype": "float32", "vocab_file": VOCAB_FILE, "dynamics_file": DYNAMICS_FILE,
        "model_config": asdict(mc), "d_vocab": len(vocab), "act_fn": "gelu",
        "normalization_type": "LN", "world": {"seed": tc.world_seed, "n_people": tc.n_people},
        "train_config": tc.to_dict(), "heldout_accuracy": accuracies,
        "train_seconds": round(train_seconds, 1), "n_params": n_params,
        "torch_version": torch.__version__,
    }
    atomic_write_bytes(folder / WEIGHTS_FILE, save({k: v.float() for k, v in state_dict.items()}))
    atomic_write_bytes(folder / VOCAB_FILE, save_vocab(vocab, folder / VOCAB_FILE))
    atomic_write_bytes(folder / DYNAMICS_FILE, dynamics.to_parquet(index=False))
    atomic_write_json(folder / CONFIG_FILE, config)  # last: its presence marks a complete set


def ship(folder: Path) -> None:
    """Copy a finished run's artefacts into the package (``data/organism/``)."""
    for name in SHIPPED:
        atomic_write_bytes(PACKAGE_DIR / name, (Path(folder) / name).read_bytes())


def read_config(path: str | Path | None = None) -> dict:
    """The organism.json of ``path`` (default: the shipped one)."""
    folder = Path(path) if path is not None else PACKAGE_DIR
    missing = [n for n in (CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE) if not (folder / n).exists()]
    if missing:
        raise FileNotFoundError(
            f"organism artefacts missing in {folder}: {missing}. Train and ship them with "
            "`attnlab organism train --ship` (or `python -m analyses.cli organism train --ship`).")
    try:
        return json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as exc:
        raise OrganismArtefactError(f"{folder / CONFIG_FILE} is corrupt ({exc}); retrain with "
                                    "`attnlab organism train --ship`") from exc


def load_organism(device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                  path: str | Path | None = None) -> HookedTransformer:
    """The trained organism as a HookedTransformer with its word-level tokenizer, eval mode.

    ``path`` is a folder holding the artefacts (default: the shipped ``data/organism/``).
    """
    folder = Path(path) if path is not None else PACKAGE_DIR
    config = read_config(folder)
    try:
        state_dict = load((folder / WEIGHTS_FILE).read_bytes())
        vocab = load_vocab(folder / VOCAB_FILE)
        # configs written before the positional field existed describe learned positions
        mc = ModelConfig(**{"positional": "learned", **config["model_config"]})
    except (SafetensorError, ValueError, KeyError, TypeError) as exc:
        raise OrganismArtefactError(
            f"organism artefacts in {folder} are corrupt or truncated ({exc}); "
            "retrain with `attnlab organism train --ship`") from exc
    if len(vocab) != config.get("d_vocab"):
        raise OrganismArtefactError(f"{VOCAB_FILE} has {len(vocab)} words but {CONFIG_FILE} "
                                    f"says d_vocab={config.get('d_vocab')}")
    model = assemble({k: v.float() for k, v in state_dict.items()}, mc, vocab)
    if dtype is not None:
        model = model.to(dtype)
    if device is not None:
        model = model.to(device)
    return model
