"""Rows of the organism's training distribution that its training never saw.

SAE corpora and the redundancy study both need text like the organism's training text (same
task mix, world and context length, read from the shipped ``organism.json``) that the organism
was not trained on. This is the one place that draws it. Training batch ``t`` of the run is
``make_batch(t, train seed)`` with ``t >= 0`` and its loss monitor uses step -1, so every
split below uses other (run seed, step) pairs, and the splits never share one:

- ``train`` / ``heldout`` (SAE training / evaluation corpora): batches of 64 rows of run seed
  ``SAE_SEED_OFFSET + 2 seed`` (``+ 1`` for heldout), steps 0, 1, ..., drawn until they hold
  ``n_tokens`` real tokens;
- ``calibration`` / ``eval`` (redundancy scores / loss after drops): one batch of ``n_rows``
  rows of the training run's seed at step ``-2`` / ``-3`` minus ``10 seed``.

The exact streams are fixed: shipped SAE metrics and tests were computed on them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from data.organism.config import ModelConfig, TrainConfig
from data.organism.load import read_config
from data.organism.model import Batch, make_batch
from data.organism.world import PAD, World, make_world

SPLITS = ("train", "heldout", "calibration", "eval")
SAE_SEED_OFFSET = 7_919_000  # SAE splits: run seeds far from any training run's seed
SAE_BATCH_ROWS = 64  # rows per drawn batch of the SAE splits
_ONE_BATCH_STEP = {"calibration": -2, "eval": -3}  # steps of the training seed nobody trains on


class TrainingSetup(NamedTuple):
    """What the held-out rows copy from the shipped organism's training run."""

    world: World
    mix: dict[str, float]  # task-family weights of the training batches
    train_seed: int
    n_ctx: int
    reasoning_rows: str  # how its reasoning rows were written (corpus.REASONING_ROWS)


def training_setup() -> TrainingSetup:
    """The shipped organism's world, task mix, seed and context (config defaults if absent)."""
    try:
        conf = read_config()
        world = conf["world"]
        train = conf["train_config"]
        return TrainingSetup(make_world(world["seed"], world["n_people"]), train["mix"],
                             int(train["seed"]), int(conf["model_config"]["n_ctx"]),
                             # configs written before the field existed used the first rows
                             train.get("reasoning_rows", "v1"))
    except (FileNotFoundError, KeyError):
        tc = TrainConfig()
        return TrainingSetup(make_world(tc.world_seed, tc.n_people), tc.mix, tc.seed,
                             ModelConfig().n_ctx, tc.reasoning_rows)


def heldout_rows(split: str, seed: int = 0, *, n_rows: int | None = None,
                 n_tokens: int | None = None) -> Batch:
    """Rows of ``split`` (module docstring), right-padded with ``<pad>``.

    The SAE splits (``train``, ``heldout``) take ``n_tokens``; the redundancy splits
    (``calibration``, ``eval``) take ``n_rows``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    setup = training_setup()
    if split in _ONE_BATCH_STEP:
        if n_rows is None or n_tokens is not None:
            raise ValueError(f"split {split!r} is one batch: give n_rows (not n_tokens)")
        step = _ONE_BATCH_STEP[split] - 10 * int(seed)
        return make_batch(step, setup.train_seed, setup.world, setup.mix, n_rows, setup.n_ctx,
                          setup.reasoning_rows)
    if n_tokens is None or n_rows is not None:
        raise ValueError(f"split {split!r} is drawn to a token count: give n_tokens (not n_rows)")
    run_seed = SAE_SEED_OFFSET + 2 * int(seed) + (split == "heldout")
    drawn, total = [], 0
    while total < n_tokens:
        batch = make_batch(len(drawn), run_seed, setup.world, setup.mix, SAE_BATCH_ROWS,
                           setup.n_ctx, setup.reasoning_rows)
        drawn.append(batch)
        total += int(batch.mask.sum())
    return _concat(drawn, setup.world.vocab.index(PAD))


def _concat(batches: list[Batch], pad_id: int) -> Batch:
    """One batch of all rows, right-padded to the widest."""
    width = max(b.tokens.shape[1] for b in batches)
    pad = lambda t, value: torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)
    tokens = torch.cat([pad(b.tokens, pad_id) for b in batches])  # (batch, pos)
    mask = torch.cat([pad(b.mask, False) for b in batches])  # (batch, pos)
    return Batch(tokens, mask)
