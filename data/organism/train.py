"""Train the organism (``attnlab organism train --steps N --out DIR [--resume]``).

Seeded and reproducible: the initial weights come from ``seed`` and training batch ``t`` from
its own RNG seeded by ``(seed, t)``, the LR is a pure function of the step, and the resumable
checkpoint holds weights + AdamW state + step, so an interrupted run resumed with ``--resume``
ends with the same weights as an uninterrupted one. Ctrl-C / SIGTERM stop cleanly between
steps after saving that checkpoint; ``save_every`` steps it is saved anyway.

Output folder (default ``runs/organism-train``, git-ignored)::

    last.safetensors, last.json            resumable state
    checkpoints/step_XXXXXX.safetensors    log-spaced weights (TransformerLens names)
    organism.safetensors, organism.json,   final artefacts, loadable with
    vocab.json, organism_dynamics.parquet  data.organism.load.load_organism(path=DIR)

``--ship`` also writes the final artefacts into ``data/organism/`` (what ``attnlab`` ships).

At each log-spaced checkpoint the trainer records loss and task accuracies in the dynamics
table and calls its ``on_checkpoint`` callbacks (``dynamics.CheckpointCallback``) for the
statistics of the model's internals; ``attnlab organism train`` passes the probes' ones
(``probes.dynamics``). ``python -m data.organism.train`` only points there: without those
callbacks a run's dynamics table would lack them.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save
from tqdm import tqdm

from data.metrics import mean_next_token_nll
from data.organism import dynamics
from data.organism.checkpoint import load_last, save_last
from data.organism.config import ModelConfig, TrainConfig, preset
from data.organism.corpus import FAMILIES, LONGEST_ROW, make_items
from data.organism.evaluate import encode_items, item_accuracy
from data.organism.hops import hop_accuracies
from data.organism.load import DYNAMICS_FILE, PACKAGE_DIR, assemble, write_artefacts
from data.organism.model import make_batch
from data.organism.net import OrganismNet, to_hooked_state_dict
from data.organism.world import make_world
from data.store import atomic_write_bytes

log = logging.getLogger(__name__)
EVAL_SEED = 10_000  # items scored during training; tests and tasks draw other seeds


@dataclass(frozen=True)
class OrganismTrainResult:
    out: Path  # the output folder
    step: int  # steps done
    finished: bool  # False when stopped early (stop_at or a signal)
    elapsed_s: float  # wall seconds of training, summed over resumes
    accuracies: dict[str, float]  # held-out accuracy per task family at ``step``


def log_steps(total: int, n: int) -> list[int]:
    """0, ``n`` log-spaced steps in [1, total], and ``total``."""
    spaced = np.unique(np.round(np.geomspace(1, total, n)).astype(int))
    return sorted({0, total, *spaced.tolist()})


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr_min_frac * lr``."""
    if step < tc.warmup:
        return tc.lr * (step + 1) / tc.warmup
    frac = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
    return tc.lr * (tc.lr_min_frac + (1 - tc.lr_min_frac) * 0.5 * (1 + math.cos(math.pi * frac)))


def _optimizer(net: OrganismNet, tc: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in net.parameters() if p.dim() == 2]  # no decay on biases and LayerNorms
    rest = [p for p in net.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": tc.weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.98))


class _Evaluator:
    """Fixed held-out items and evaluation rows of one run, and its checkpoint callbacks."""

    def __init__(self, world, mc: ModelConfig, tc: TrainConfig,
                 callbacks: Sequence[dynamics.CheckpointCallback]) -> None:
        w2i = world.word_ids
        self.items = {f: encode_items(make_items(f, tc.n_eval, EVAL_SEED, world), w2i)
                      for f in FAMILIES}
        self.fixed = dynamics.eval_rows(world, mc, tc)
        self.n_hops = tc.n_eval
        self.callbacks = list(callbacks)

    @torch.no_grad()
    def accuracies(self, net: torch.nn.Module) -> dict[str, float]:
        return {f: item_accuracy(net, t) for f, t in self.items.items()}

    @torch.no_grad()
    def rows(self, net: OrganismNet, world, step: int) -> list[dict]:
        batch = self.fixed.loss
        loss = mean_next_token_nll(net(batch.tokens), batch.tokens, batch.mask).item()
        rows = dynamics.trainer_rows(step, loss, self.accuracies(net))
        rows += [dynamics.row(step, f"hop_{h.probe}", h.accuracy)
                 for h in hop_accuracies(net, world, n=self.n_hops)]
        if self.callbacks:
            model = assemble(to_hooked_state_dict(net), net.cfg, world.vocab)
            for callback in self.callbacks:
                rows += callback(step, model, self.fixed.probe)
        return rows


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps; restores the old handlers."""

    def __enter__(self):
        self.set = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame) -> None:
        self.set = True

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def train_step(net: OrganismNet, opt: torch.optim.Optimizer, world, mc: ModelConfig,
               tc: TrainConfig, step: int) -> torch.Tensor:
    """One optimizer step on training batch ``step`` (its rows, LR and clipping); the loss."""
    batch = make_batch(step, tc.seed, world, tc.mix_at(step), tc.batch_size, mc.n_ctx,
                       tc.reasoning_rows)
    for group in opt.param_groups:
        group["lr"] = lr_at(step, tc)
    loss = mean_next_token_nll(net(batch.tokens), batch.tokens, batch.mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
    opt.step()
    return loss


def _checkpoint_weights(out: Path, net: OrganismNet, step: int) -> None:
    atomic_write_bytes(out / "checkpoints" / f"step_{step:06d}.safetensors",
                       save(to_hooked_state_dict(net)))


def _dynamics_so_far(out: Path, before_step: int) -> list[dict]:
    path = out / DYNAMICS_FILE
    if not path.exists():
        return []
    df = pd.read_parquet(path)
    return df[df.step < before_step].to_dict("records")


def train(mc: ModelConfig, tc: TrainConfig, out: str | Path, *, resume: bool = False,
          stop_at: int | None = None, progress: bool = True,
          on_checkpoint: Sequence[dynamics.CheckpointCallback] = ()) -> OrganismTrainResult:
    """Train (or resume) into ``out``; stop early at step ``stop_at`` if given.

    At each checkpoint, every ``on_checkpoint`` callback adds its rows to the dynamics table.
    """
    out = Path(out)
    if mc.n_ctx <= LONGEST_ROW[tc.reasoning_rows]:
        raise ValueError(f"n_ctx {mc.n_ctx} is too short for {tc.reasoning_rows!r} reasoning rows "
                         f"(up to {LONGEST_ROW[tc.reasoning_rows] + 1} tokens): raise n_ctx")
    out.mkdir(parents=True, exist_ok=True)
    world = make_world(tc.world_seed, tc.n_people)
    torch.manual_seed(tc.seed)
    net = OrganismNet(mc, len(world.vocab))
    opt = _optimizer(net, tc)
    meta = {"model_config": asdict(mc), "train_config": tc.to_dict(), "elapsed_s": 0.0}
    step, elapsed = 0, 0.0
    if resume:
        state = load_last(out, net, opt)
        if state.meta["model_config"] != meta["model_config"] or \
                state.meta["train_config"] != meta["train_config"]:
            raise ValueError(f"checkpoint in {out} was made with other configs; use another --out")
        step, elapsed = state.step, state.elapsed_s
    ev = _Evaluator(world, mc, tc, on_checkpoint)
    marks = set(log_steps(tc.steps, tc.n_checkpoints))
    rows = _dynamics_so_far(out, step)
    start, acc = time.perf_counter() - elapsed, {}
    bar = tqdm(total=tc.steps, initial=step, disable=not progress, desc="organism")
    with _StopFlag() as stop:
        while True:
            if step in marks:
                rows += ev.rows(net, world, step)
                _checkpoint_weights(out, net, step)
                table = dynamics.to_frame(rows).to_parquet(index=False)
                atomic_write_bytes(out / DYNAMICS_FILE, table)
            if step >= tc.steps or stop.set or (stop_at is not None and step >= stop_at):
                break
            loss = train_step(net, opt, world, mc, tc, step)
            step += 1
            bar.update(1)
            if step % tc.eval_every == 0 or step == tc.steps:
                acc = ev.accuracies(net)
                shown = {f[:4]: f"{a:.2f}" for f, a in acc.items()}
                bar.set_postfix(loss=f"{loss.item():.3f}", **shown)
            if step % tc.save_every == 0:
                save_last(out, net, opt, step, {**meta, "elapsed_s": time.perf_counter() - start})
    bar.close()
    elapsed = time.perf_counter() - start
    save_last(out, net, opt, step, {**meta, "elapsed_s": elapsed})
    finished = step >= tc.steps
    acc = ev.accuracies(net)
    if finished:
        write_artefacts(out, to_hooked_state_dict(net), mc, tc, world.vocab, accuracies=acc,
                        train_seconds=elapsed, dynamics=dynamics.to_frame(rows))
    return OrganismTrainResult(out, step, finished, elapsed, acc)


def run(args: argparse.Namespace,
        on_checkpoint: Sequence[dynamics.CheckpointCallback] = ()) -> int:
    """Train as the options of ``data.organism.options`` say; 0 when finished, 130 if stopped."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    mc, tc = preset(args.config)
    overrides = {"steps": args.steps, "seed": args.seed}
    tc = replace(tc, **{k: v for k, v in overrides.items() if v is not None})
    result = train(mc, tc, args.out, resume=args.resume, on_checkpoint=on_checkpoint)
    log.info("steps %d in %.0f s; held-out accuracy %s", result.step, result.elapsed_s,
             {k: round(v, 3) for k, v in result.accuracies.items()})
    if not result.finished:
        log.info("stopped early; continue with --resume --out %s", args.out)
        return 130
    if args.ship:
        from data.organism.load import ship

        ship(Path(args.out))
        log.info("shipped artefacts to %s", PACKAGE_DIR)
    return 0


if __name__ == "__main__":  # the former entry point: say where it went instead of doing nothing
    raise SystemExit("train with `attnlab organism train` (or `python -m analyses.cli organism "
                     "train`): it adds the probes' statistics to the dynamics table")
