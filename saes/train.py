"""Train attention-output SAEs on one layer's `hook_z` with SAE-Lens' own trainer.

    from saes.train import train_attention_sae
    res = train_attention_sae(load_model("organism"), layer=1,
                              cfg=SAETrainConfig(arch="topk", d_sae=1536, k=32),
                              out_dir="runs/sae-l1")       # checkpoints + final SAE
    res.sae        # sae_lens.TopKSAE, reshape_activations="hook_z"

The optimisation is SAE-Lens' `SAETrainer` (Adam, LR schedule, TopK aux loss / L1 / JumpReLU
L0, dead-feature tracking, checkpoints, progress bar). What attnlab adds is the data: SAE-Lens'
runner can only stream Hugging Face datasets through `HookedTransformer.run_with_cache`, so the
activations come from `saes.activations` (live model on attnlab's corpora, or activation
shards) as an in-memory buffer fed through `ShuffledBatches`. Resume: checkpoints hold SAE-Lens'
trainer state; the batch stream restarts at the saved sample count, so an interrupted and
resumed run ends with the same weights as an uninterrupted one.

Every checkpoint also holds the run's full configuration (`attnlab_train_config.json`: model,
layer, d_in, every `SAETrainConfig` field, the activation source). A checkpoint is resumed only
when that configuration equals the new run's: anything else (another layer, k, d_sae, learning
rate ...) would train an SAE whose saved configuration does not describe its training, so it
is a :class:`ResumeError` naming the differing fields and `--no-resume` (``resume=False``),
raised before any activation is collected. The step count is restored from the sample count
(SAE-Lens saves its automatic checkpoints one step short), and the trainer state is first
loaded with ``torch.load(weights_only=True)``, so a tampered checkpoint runs no code.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from data.store import atomic_write_json
from saes.activations import ShuffledBatches, hook_z_name
from saes.config import SAETrainConfig
from saes.io import save_sae, to_inference

log = logging.getLogger(__name__)
COMPLETE_MARKER = "attnlab_checkpoint_complete"
CONFIG_FILE = "attnlab_train_config.json"  # the configuration a checkpoint was made with
TRAINER_STATE = "trainer_state.pt"  # SAE-Lens' optimizer/scheduler/counters (a torch pickle)
NO_RESUME = "pass --no-resume (resume=False) to train afresh there, or choose another --out"


class ResumeError(ValueError):
    """A checkpoint in the output folder that cannot be resumed (other settings, damaged)."""


class TrainResult(NamedTuple):
    """The trained SAE and how the run went."""

    sae: object  # inference sae_lens.SAE (hook_z reshaping on)
    path: Path | None  # folder of the saved SAE (None when out_dir was None)
    n_steps: int  # optimiser steps taken in total (including before a resume)
    n_tokens: int  # training samples seen in total
    resumed_from: int  # samples already seen at the checkpoint resumed from (0: fresh run)
    losses: tuple[float, ...] = ()  # per-step loss of the global batch (parallel loop only)


def _training_class(arch: str):
    import sae_lens

    return {
        "topk": sae_lens.TopKTrainingSAE,
        "jumprelu": sae_lens.JumpReLUTrainingSAE,
        "standard": sae_lens.StandardTrainingSAE,
    }[arch]


def build_training_sae(cfg: SAETrainConfig, d_in: int, layer: int, model_name: str, init_mean):
    """A fresh SAE-Lens training SAE, weights seeded by cfg.seed, b_dec at the data mean.

    b_dec starts at the mean activation (SAE-Lens v6 dropped its b_dec initialisation), so
    the first steps do not spend themselves learning the offset of hook_z.
    """
    sae_cfg = cfg.sae_lens_config(d_in, hook_z_name(layer), model_name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        sae = _training_class(cfg.arch)(sae_cfg)
    if init_mean is not None:
        with torch.no_grad():
            sae.b_dec.copy_(init_mean.to(sae.b_dec))
    return sae


def trainer_config(cfg: SAETrainConfig, device: str, checkpoint_dir: Path | None):
    from sae_lens.config import SAETrainerConfig

    return SAETrainerConfig(
        total_training_samples=cfg.total_steps * cfg.batch_tokens,
        train_batch_size_samples=cfg.batch_tokens,
        lr=cfg.lr, lr_end=cfg.lr, lr_scheduler_name="constant",
        lr_warm_up_steps=cfg.lr_warm_up_steps,
        lr_decay_steps=int(cfg.lr_decay_frac * cfg.total_steps),
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, device=device,
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=min(cfg.dead_feature_window, max(1, cfg.total_steps)),
        n_checkpoints=cfg.n_checkpoints if checkpoint_dir is not None else 0,
        checkpoint_path=str(checkpoint_dir) if checkpoint_dir is not None else None,
    )


def latest_checkpoint(checkpoint_dir: Path | None) -> Path | None:
    """The complete checkpoint with the most samples seen, or None."""
    if checkpoint_dir is None or not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.iterdir() if p.name.isdigit()
            and (p / COMPLETE_MARKER).is_file()]
    return max(done, key=lambda p: int(p.name), default=None)


def train_signature(cfg: SAETrainConfig, layer: int, model_name: str, d_in: int,
                    data: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint must have been made with to be resumed: the model, the layer, d_in,
    every training setting and the activation source (``data``, flattened as ``data.KEY``)."""
    sig = {"model": model_name, "layer": int(layer), "d_in": int(d_in), **cfg.to_dict()}
    sig.update({f"data.{k}": v for k, v in (data or {}).items()})
    return sig


def corpus_source(activation_cfg) -> dict[str, Any]:
    """The ``data`` of :func:`train_signature` for activations collected live from the corpus."""
    return {"source": "corpus", **activation_cfg.to_dict()}


def _mark_complete(checkpoint_path: Path | None, signature: dict[str, Any]) -> None:
    """SAE-Lens' save hook: the configuration first, the completion marker last."""
    if checkpoint_path is not None:
        atomic_write_json(Path(checkpoint_path) / CONFIG_FILE, signature)
        (Path(checkpoint_path) / COMPLETE_MARKER).write_text("ok\n")


def _saved_signature(checkpoint: Path) -> dict[str, Any]:
    try:
        saved = json.loads((checkpoint / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict):
        raise ResumeError(f"checkpoint {checkpoint} has no readable {CONFIG_FILE} (older "
                          "attnlab, or damaged), so it cannot be checked against this run; "
                          f"{NO_RESUME}")
    return saved


def resumable_checkpoint(out_dir: str | Path | None, signature: dict[str, Any]) -> Path | None:
    """The checkpoint in ``out_dir`` to resume from (None when there is none), after checking
    that it was made with ``signature`` (its keys are compared); ResumeError otherwise."""
    start = latest_checkpoint(Path(out_dir) / "checkpoints" if out_dir is not None else None)
    if start is None:
        return None
    saved = _saved_signature(start)
    diff = [k for k in signature if saved.get(k) != signature[k]]
    if diff:
        changes = ", ".join(f"{k} {saved.get(k)!r} -> {signature[k]!r}" for k in diff)
        raise ResumeError(f"checkpoint {start} was trained with other settings ({changes}); "
                          f"resuming it would save an SAE its configuration does not describe: "
                          f"{NO_RESUME}")
    return start


def _load_trainer_state(trainer, checkpoint: Path, batch_tokens: int) -> None:
    """Restore SAE-Lens' trainer state, checked weights-only first, with the exact step count."""
    try:
        torch.load(checkpoint / TRAINER_STATE, map_location="cpu", weights_only=True)
        trainer.load_trainer_state(checkpoint)
    except Exception as exc:  # torch raises several types for damaged or unsafe pickles
        raise ResumeError(f"checkpoint {checkpoint}: {TRAINER_STATE} cannot be loaded as "
                          f"weights only ({type(exc).__name__}): it is damaged or was not "
                          f"written by attnlab; {NO_RESUME}") from None
    # SAE-Lens saves its automatic checkpoints before counting the step it just took; every
    # step takes exactly batch_tokens samples (ShuffledBatches), so the count is exact here.
    trainer.n_training_steps = trainer.n_training_samples // batch_tokens


def resume_trainer(trainer, start: Path, batch_tokens: int) -> None:
    """Load checkpoint ``start`` into SAE-Lens' ``trainer`` (state, then the SAE's weights)."""
    log.info("resuming from %s", start)
    _load_trainer_state(trainer, start, batch_tokens)
    try:
        trainer.sae.load_weights_from_checkpoint(start)
    except Exception as exc:  # safetensors and torch raise several types
        raise ResumeError(f"checkpoint {start}: the SAE weights cannot be read "
                          f"({type(exc).__name__}); {NO_RESUME}") from None
    trainer.checkpoint_thresholds = [
        t for t in trainer.checkpoint_thresholds if t >= trainer.n_training_samples
    ]


def _update_pbar_every_step(trainer, step_output, pbar, update_interval: int = 100) -> None:
    """SAE-Lens' progress-bar update, made exact: its own moves the bar by
    ``100 * batch`` samples every 100th step only, so a run of 488 steps stopped the bar at
    400/488 (82 %) and looked stalled while the SAE was saved and evaluated. This moves it to
    the samples actually seen after every step (tqdm limits the redraws), so it reaches its
    total when training ends; the loss description still changes every 100th step."""
    from sae_lens.training.sae_trainer import _unwrap_item  # callables and tensors alike

    if trainer.n_training_steps % update_interval == 0:
        losses = " | ".join(f"{name}: {_unwrap_item(value):.5f}"
                            for name, value in step_output.losses.items())
        pbar.set_description(f"{trainer.n_training_steps}| {losses}")
    pbar.update(trainer.n_training_samples - pbar.n)


def as_buffer(acts: Tensor, d_in: int) -> Tensor:
    """(n, d_in) float32 view of activations given as (n, d_in) or (n, head, d_head)."""
    if acts.ndim == 3 and acts.shape[1] * acts.shape[2] == d_in:
        acts = acts.reshape(acts.shape[0], d_in)  # (n, head, d_head) -> (n, d_in)
    if acts.ndim != 2 or acts.shape[1] != d_in:
        raise ValueError(
            f"activations of shape {tuple(acts.shape)} do not match d_in={d_in}: pass "
            "(tokens, n_heads*d_head) or (tokens, n_heads, d_head) from this layer's hook_z"
        )
    return acts.float()


def train_on_buffer(
    buffer: Tensor, layer: int, cfg: SAETrainConfig, model_name: str,
    out_dir: str | Path | None = None, resume: bool = True, data_wrapper=None,
    data: dict[str, Any] | None = None, parallel: bool | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train on an in-memory (n, d_in) activation buffer; the core of every training path.

    With ``out_dir``, checkpoints go to ``out_dir/checkpoints``; ``resume`` continues from the
    latest one if it was made with this run's configuration (ResumeError otherwise), and
    ``resume=False`` deletes them and starts afresh. ``data`` describes the activation source
    (recorded and compared with the configuration). `data_wrapper` (tests) wraps the batch
    iterator, e.g. to simulate an interrupt. ``parallel`` (default: when running under
    torchrun) replaces SAE-Lens' ``fit`` by the data-parallel loop of :mod:`saes.parallel`
    (rank 0 writes the checkpoints and the SAE); ``max_steps`` stops that loop early.
    """
    from sae_lens.training.sae_trainer import SAETrainer

    from probes.distributed import barrier, broadcast, rank_info
    from saes.parallel import fit_parallel

    info = rank_info()
    parallel = info.distributed if parallel is None else parallel
    out = Path(out_dir) if out_dir is not None else None
    ckpt_dir = out / "checkpoints" if out is not None else None
    signature = {**train_signature(cfg, layer, model_name, buffer.shape[1], data),
                 "n_activations": int(buffer.shape[0])}
    start = resumable_checkpoint(out, signature) if resume else None
    barrier()  # every rank has read the checkpoints before rank 0 may delete them
    if not resume and ckpt_dir is not None and ckpt_dir.is_dir() and info.is_main:
        shutil.rmtree(ckpt_dir)  # another run's checkpoints must never be resumed as this one
    device = str(buffer.device)
    sae = build_training_sae(cfg, buffer.shape[1], layer, model_name, buffer.mean(0))
    trainer = SAETrainer(cfg=trainer_config(cfg, device, ckpt_dir if info.is_main else None),
                         sae=sae, data_provider=iter(()),
                         save_checkpoint_fn=functools.partial(_mark_complete, signature=signature))
    trainer._update_pbar = functools.partial(_update_pbar_every_step, trainer)
    if start is not None:
        resume_trainer(trainer, start, cfg.batch_tokens)
    resumed_from = trainer.n_training_samples
    data = ShuffledBatches(buffer, cfg.batch_tokens, cfg.seed, start=resumed_from)
    trainer.data_provider = data_wrapper(data) if data_wrapper else data
    losses: list[float] = []
    try:
        if parallel:
            losses = fit_parallel(trainer, max_steps)
        else:
            trainer.fit()
    except KeyboardInterrupt:
        if ckpt_dir is not None and info.is_main:
            log.warning("interrupted: saving a checkpoint to resume from")
            trainer.save_checkpoint(checkpoint_name=str(trainer.n_training_samples))
        raise
    inference = to_inference(sae)
    path = None
    if out is not None and info.is_main:
        path = save_sae(inference, out, hook_layer=layer, attnlab_train_config=cfg.to_dict(),
                        n_training_tokens=trainer.n_training_samples)
    path = broadcast(path)  # rank 0's folder, saved before any rank returns
    return TrainResult(inference, path, trainer.n_training_steps, trainer.n_training_samples,
                       resumed_from, tuple(losses))


def train_attention_sae(
    model, layer: int, cfg: SAETrainConfig | None = None, *, activations: Tensor | None = None,
    activation_cfg=None, out_dir: str | Path | None = None, resume: bool = True,
    data: dict[str, Any] | None = None,
) -> TrainResult:
    """Train an SAE on `model`'s `blocks.{layer}.attn.hook_z` (all heads concatenated).

    `model` is a `LoadedModel` (or a name for `load_model`). Activations come from
    `activations` ((n, d_in) or (n, head, d_head), e.g. read from shards), else live from the
    model on its default corpus (`saes.corpus`), sized by `activation_cfg`. `data` describes
    given activations for the checkpoints' configuration (default: "given"); a checkpoint in
    `out_dir` made with other settings is refused before any activation is collected.
    """
    from probes.models import LoadedModel, load_model
    from saes.activations import activation_buffer_from_tokens, z_shape
    from saes.config import ActivationConfig
    from saes.corpus import corpus_tokens

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    cfg = cfg or SAETrainConfig()
    shape = z_shape(loaded.model, layer)
    if data is None:
        data = ({"source": "given"} if activations is not None
                else corpus_source(activation_cfg or ActivationConfig()))
    if resume:  # a checkpoint of other settings fails here, before the activations
        resumable_checkpoint(out_dir, train_signature(cfg, layer, loaded.name, shape.d_in, data))
    if activations is None:
        acfg = activation_cfg or ActivationConfig()
        tokens = corpus_tokens(loaded, acfg.n_tokens, acfg.seed, acfg.max_len)
        activations = activation_buffer_from_tokens(
            loaded, layer, tokens, acfg.n_tokens, acfg.prompt_batch)
    buffer = as_buffer(activations, shape.d_in)
    return train_on_buffer(buffer, layer, cfg, loaded.name, out_dir, resume, data=data)

