"""Data-parallel SAE training: SAE-Lens' SAE, loss, optimizer and schedules; our parallel step.

SAE-Lens' ``SAETrainer`` has no DistributedDataParallel (SAE-Lens issue #491). Everything it
does is kept -- the training SAE classes and their ``training_forward_pass`` (the loss: MSE +
TopK aux / L1 / JumpReLU L0), its Adam, LR and coefficient schedulers, dead-feature tracking,
checkpoint format -- by building the same ``SAETrainer`` as :func:`saes.train.train_on_buffer`
and replacing only its step (:func:`parallel_step`, looped by :func:`fit_parallel`, which
``train_on_buffer`` runs instead of ``fit`` under torchrun):

1. every rank draws the same *global* batch (``ShuffledBatches``, same seed and position) and
   keeps its contiguous block of ``batch_tokens / world`` rows;
2. forward + loss on the block (SAE-Lens' loss is a mean over rows), backward;
3. gradients are all-reduced and averaged before every optimizer step, so each rank applies
   the gradient of the global batch's loss; the feature-firing counts that drive dead-feature
   tracking (TopK aux loss) are all-reduced too, so every rank keeps the same state;
4. SAE-Lens' grad-norm clipping, Adam step and scheduler steps, as in ``_train_step``.

With the same global batch the loss curve equals the one-process run up to float rounding
(``tests/saes/test_distributed_sae.py``). Rank 0 writes the checkpoints (SAE-Lens' format,
with attnlab's configuration and completion marker) and the final SAE; the trainer state is
global (identical on every rank), so a checkpoint resumes under any number of processes.
Every rank holds the whole activation buffer; only the compute is split.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from probes.distributed import rank_info, shard_range


def _all_reduce_mean(t: Tensor, world: int) -> Tensor:
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world
    return t


def parallel_step(trainer, local: Tensor) -> float:
    """One optimizer step of SAE-Lens' ``trainer`` on this rank's block ``local`` (n, d_in) of
    the global batch; returns the global batch's loss. Mirrors ``SAETrainer._train_step``
    with the all-reduces of the module docstring (no-ops in one process)."""
    from sae_lens.saes.sae import TrainStepInput

    world = rank_info().world_size
    sae = trainer.sae
    local = local.to(sae.device)
    trainer.n_training_samples += local.shape[0] * world
    sae.train()
    with trainer.autocast_if_enabled:
        out = sae.training_forward_pass(step_input=TrainStepInput(
            sae_in=trainer.activation_scaler(local), dead_neuron_mask=trainer.dead_neurons,
            coefficients=trainer.get_coefficients(), n_training_steps=trainer.n_training_steps,
            is_logging_step=False))
        with torch.no_grad():
            fired = out.feature_acts.bool().float().sum(-2)  # (d_sae,) rows firing each feature
            fired = fired.to_dense() if fired.is_sparse else fired
            if world > 1:
                dist.all_reduce(fired, op=dist.ReduceOp.SUM)
            trainer.n_forward_passes_since_fired += 1
            trainer.n_forward_passes_since_fired[fired > 0] = 0
            trainer.act_freq_scores += fired
            trainer.n_frac_active_samples += trainer.cfg.train_batch_size_samples
    out.loss.backward()
    if world > 1:
        grads = [p.grad for p in sae.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for all parameters
        _all_reduce_mean(flat, world)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad()
    trainer.lr_scheduler.step()
    for scheduler in trainer.coefficient_schedulers.values():
        scheduler.step()
    return float(_all_reduce_mean(out.loss.detach().float().reshape(1).clone(), world))


def fit_parallel(trainer, max_steps: int | None = None) -> list[float]:
    """SAE-Lens' ``trainer.fit()`` with :func:`parallel_step`: the training loop of
    :func:`saes.train.train_on_buffer` under torchrun (one process: the same loop).

    ``trainer.data_provider`` yields *global* batches (every rank the same ones); each rank
    keeps its contiguous block, so ``batch_tokens`` must divide by the number of processes.
    Only the trainer built with a checkpoint path (rank 0) checkpoints, at SAE-Lens' own
    thresholds and in its format. Returns the global batch's loss at every step taken.
    """
    info = rank_info()
    batch_tokens = trainer.cfg.train_batch_size_samples
    if batch_tokens % info.world_size:
        raise ValueError(f"batch_tokens {batch_tokens} does not divide by the "
                         f"{info.world_size} processes: choose a multiple of the process count")
    block = shard_range(batch_tokens, info).as_slice()
    trainer.sae.to(trainer.cfg.device)
    losses: list[float] = []
    while trainer.n_training_samples < trainer.cfg.total_training_samples and (
            max_steps is None or len(losses) < max_steps):
        trainer.maybe_reset_sparsity()
        losses.append(parallel_step(trainer, next(trainer.data_provider)[block]))
        trainer._checkpoint_if_needed()  # as fit(): before the step count moves on
        trainer.n_training_steps += 1
    trainer.set_final_sae_metadata()
    return losses
