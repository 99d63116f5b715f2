"""The organism's per-checkpoint training-dynamics table (``organism_dynamics``): its rows, the
fixed evaluation rows they are measured on, and the checkpoint callbacks that add to it.

Long format, one row per (step, metric, layer, head): ``layer``/``head`` are -1 where they do
not apply. The trainer records, at each log-spaced checkpoint:

- ``loss``: mean next-token cross-entropy on a fixed evaluation batch (``data.metrics``);
- ``accuracy_<task>``: held-out top-1 accuracy of each task family;
- ``hop_<probe>``: held-out top-1 accuracy of the reasoning task's one- and two-hop lookups
  (``place``, ``person_cut``, ``person``: :mod:`data.organism.hops`).

Statistics of the model's internals come from :class:`CheckpointCallback` objects handed to
``data.organism.train.train(on_checkpoint=...)``: they live in ``probes`` (above ``data/``), so
no second implementation of them is kept here. ``attnlab organism train`` passes
``probes.dynamics.checkpoint_statistics``, which adds ``massive_max``, ``massive_ratio`` (per
layer) and ``entropy`` (per layer and head).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import pandas as pd
from transformer_lens import HookedTransformer

from data.organism.config import ModelConfig, TrainConfig
from data.organism.model import Batch, make_batch
from data.organism.world import World

COLUMNS = ("step", "metric", "layer", "head", "value")
LOSS_ROWS, PROBE_ROWS = 64, 16  # rows of the loss batch; its first rows the callbacks read


class CheckpointCallback(Protocol):
    """Measures one checkpoint: ``model`` (eval mode) on the fixed ``probe`` rows -> rows."""

    def __call__(self, step: int, model: HookedTransformer, probe: Batch) -> list[dict]: ...


class EvalRows(NamedTuple):
    """The fixed rows one training run is measured on at every checkpoint."""

    loss: Batch  # (batch, pos), batch = LOSS_ROWS: the ``loss`` metric
    probe: Batch  # (batch, pos), batch = PROBE_ROWS: what checkpoint callbacks run the model on


def eval_rows(world: World, mc: ModelConfig, tc: TrainConfig) -> EvalRows:
    """Rows of the full training mix at step -1 of the run's seed (training uses steps >= 0)."""
    loss = make_batch(-1, tc.seed, world, tc.mix, LOSS_ROWS, mc.n_ctx, tc.reasoning_rows)
    return EvalRows(loss, Batch(loss.tokens[:PROBE_ROWS], loss.mask[:PROBE_ROWS]))


def row(step: int, metric: str, value: float, layer: int = -1, head: int = -1) -> dict:
    """One row of the table."""
    return dict(step=step, metric=metric, layer=layer, head=head, value=float(value))


def trainer_rows(step: int, loss: float, accuracies: dict[str, float]) -> list[dict]:
    """The rows the trainer itself records: ``loss`` and ``accuracy_<task>``."""
    return [row(step, "loss", loss)] + [row(step, f"accuracy_{t}", a)
                                        for t, a in accuracies.items()]


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"step": "int64", "layer": "int64", "head": "int64", "value": "float64"})
