"""Store one layer's ``hook_z`` activations on disk, in shards, for SAE training; resumable.

Layout of a store folder::

    <path>/manifest.json            model, layer, hook, d_in, n_heads, d_head, n_tokens, shards,
                                    prompts_done, n_prompts, prompts_sha256, complete
    <path>/shard_00000.safetensors  {"activations": (n, head * d_head) float tensor}

Rows are real (unpadded) tokens, prompts in their given order, heads flattened as
``(head, d_head) -> head * d_head + d`` -- SAE-Lens' ``reshape_activations="hook_z"`` layout.
Every file is written atomically (``data.store.atomic_path``), and the manifest is rewritten
after each shard, so a killed run resumes from the last shard on disk: shards end on prompt
boundaries and ``prompts_done`` counts the prompts they hold. Resuming with other prompts,
another model, layer or hook is refused.

    write_activations(load_model("minilm"), prompts, "acts/minilm_L3", layer=3)
    for x in ActivationShards("acts/minilm_L3"):   # (n, d_in) tensors
        ...

Under torchrun (:mod:`probes.distributed`) rank r writes the contiguous block r of the
prompts into its own store ``<path>/rank_00r/`` (same layout, its own manifest, resumable on
its own; resume with the same number of processes), and once every rank is done rank 0 writes
``<path>/manifest.json`` listing all ranks' shards in rank order (``"file":
"rank_000/shard_00000.safetensors"``). Rank order is prompt order, so the store reads as one,
row for row the one-process store, by :class:`ActivationShards` and SAE training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from data.store import atomic_path, atomic_write_json
from probes.accumulators import real_rows
from probes.capture import capture
from probes.distributed import RankInfo, all_gather, barrier, rank_info, shard_range
from probes.models import LoadedModel
from probes.tokens import batches, tokenize

MANIFEST = "manifest.json"
RANK_DIR = "rank_{:03d}"  # one rank's own store inside a distributed store
TENSOR_KEY = "activations"


@dataclass(frozen=True)
class WriterConfig:
    """Settings of :func:`write_activations`."""

    layer: int  # block whose attention hook_z is stored
    shard_tokens: int = 65_536  # a shard is closed once it holds at least this many tokens
    batch_size: int = 32  # prompts per forward pass
    dtype: str = "float32"  # stored dtype: float32 | float16 | bfloat16

    def __post_init__(self) -> None:
        if self.layer < 0 or self.shard_tokens < 1 or self.batch_size < 1:
            raise ValueError("WriterConfig needs layer >= 0, shard_tokens >= 1, batch_size >= 1")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {self.dtype!r}")


def prompts_digest(prompts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(p.encode("utf-8") + b"\0")
    return h.hexdigest()


class ActivationWriter:
    """Accumulator that buffers flattened ``hook_z`` rows and writes full shards."""

    def __init__(self, path: str | Path, header: dict[str, Any], shard_tokens: int, dtype: str):
        self.path = Path(path)
        self.shard_tokens = shard_tokens
        self.dtype = getattr(torch, dtype)
        self.manifest = self._open(header)
        self._buffer: list[torch.Tensor] = []
        self._buffered = 0

    def _open(self, header: dict[str, Any]) -> dict[str, Any]:
        path = self.path / MANIFEST
        if not path.is_file():
            return {**header, "n_tokens": 0, "shards": [], "prompts_done": 0, "complete": False}
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for key in ("model", "layer", "hook", "d_in", "prompts_sha256", "dtype"):
            if manifest.get(key) != header[key]:
                raise ValueError(
                    f"{self.path} holds activations with {key}={manifest.get(key)!r}, not "
                    f"{header[key]!r}: use another folder or delete this one to start over"
                )
        return manifest

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        z = real_rows(tensor, mask)  # (n, head, d_head)
        self._buffer.append(z.reshape(z.shape[0], -1).to("cpu", self.dtype))  # (n, d_in)
        self._buffered += z.shape[0]

    def end_batch(self, prompts_done: int) -> None:
        """Called after each batch: write a shard once the buffer is full enough."""
        if self._buffered >= self.shard_tokens:
            self.flush(prompts_done)

    def flush(self, prompts_done: int) -> None:
        if self._buffered:
            name = f"shard_{len(self.manifest['shards']):05d}.safetensors"
            with atomic_path(self.path / name) as tmp:
                save_file({TENSOR_KEY: torch.cat(self._buffer).contiguous()}, str(tmp))
            self.manifest["shards"].append({"file": name, "n_tokens": self._buffered})
            self.manifest["n_tokens"] += self._buffered
            self._buffer, self._buffered = [], 0
        self.manifest["prompts_done"] = prompts_done
        atomic_write_json(self.path / MANIFEST, self.manifest)

    def result(self):
        import pandas as pd

        return pd.DataFrame([{"shard": s["file"], "n_tokens": s["n_tokens"]}
                             for s in self.manifest["shards"]])


def write_activations(loaded: LoadedModel, prompts: Sequence[str], path: str | Path,
                      config: WriterConfig, progress: bool = False) -> dict[str, Any]:
    """Write ``blocks.{layer}.attn.hook_z`` of ``prompts`` to shards under ``path``.

    Resumes where an earlier call with the same prompts stopped. Returns the manifest. Under
    torchrun, each rank writes its block of the prompts (module docstring) and every rank
    returns the merged manifest.
    """
    cfg = loaded.cfg
    if config.layer >= cfg.n_layers:
        raise ValueError(f"layer {config.layer} out of range: {loaded.name} has {cfg.n_layers}")
    prompts = list(prompts)
    info = rank_info()
    if info.distributed:
        return _write_ranks(loaded, prompts, Path(path), config, progress, info)
    return _write(loaded, prompts, path, config, progress)


def _header(loaded: LoadedModel, prompts: list[str], config: WriterConfig) -> dict[str, Any]:
    cfg = loaded.cfg
    return {"architecture": "attnlab_activation_shards", "model": loaded.name,
            "layer": config.layer, "hook": f"blocks.{config.layer}.attn.hook_z",
            "d_in": cfg.n_heads * cfg.d_head, "n_heads": cfg.n_heads, "d_head": cfg.d_head,
            "dtype": config.dtype, "n_prompts": len(prompts),
            "prompts_sha256": prompts_digest(prompts)}


def _write_ranks(loaded: LoadedModel, prompts: list[str], path: Path, config: WriterConfig,
                 progress: bool, info: RankInfo) -> dict[str, Any]:
    """This rank's block into ``path/rank_00r``; then rank 0 writes the merged manifest."""
    header = _header(loaded, prompts, config)
    top = path / MANIFEST
    if top.is_file():  # finished before (any number of processes): check it, nothing to do
        done = ActivationWriter(path, header, config.shard_tokens, config.dtype).manifest
        if done.get("complete"):
            return done
        if "ranks" not in done:
            raise ValueError(f"{path} holds an unfinished one-process store: finish it without "
                             "--nproc, or use another folder")
    shard = shard_range(len(prompts), info)
    sub = RANK_DIR.format(info.rank)
    mine = _write(loaded, prompts[shard.as_slice()], path / sub, config, progress)
    manifests = all_gather((sub, shard.start, shard.stop, mine))
    if info.is_main:
        merged = {**header, "n_tokens": sum(m["n_tokens"] for *_, m in manifests),
                  "shards": [{"file": f"{d}/{s['file']}", "n_tokens": s["n_tokens"]}
                             for d, _, _, m in manifests for s in m["shards"]],
                  "prompts_done": len(prompts), "complete": True,
                  "ranks": [{"dir": d, "prompts": [a, b]} for d, a, b, _ in manifests]}
        atomic_write_json(top, merged)
    barrier()  # nobody returns before the merged manifest exists
    return json.loads(top.read_text(encoding="utf-8"))


def _write(loaded: LoadedModel, prompts: list[str], path: str | Path, config: WriterConfig,
           progress: bool) -> dict[str, Any]:
    """One process's store of ``prompts`` under ``path`` (resumable)."""
    hook = f"blocks.{config.layer}.attn.hook_z"
    writer = ActivationWriter(path, _header(loaded, prompts, config), config.shard_tokens,
                              config.dtype)
    start = writer.manifest["prompts_done"]
    if start < len(prompts):
        tokens = tokenize(loaded, prompts[start:])
        done = start
        with capture(loaded, {hook: writer}) as cap, torch.inference_mode():
            n_batches = -(-len(prompts[start:]) // config.batch_size)
            for batch in tqdm(batches(tokens, config.batch_size), total=n_batches,
                              disable=not progress, desc=f"hook_z L{config.layer}"):
                cap.forward(batch)
                done += batch.ids.shape[0]
                writer.end_batch(done)
    writer.manifest["complete"] = True
    writer.flush(len(prompts))
    return writer.manifest


class ActivationShards:
    """Reader of a store written by :func:`write_activations` (the SAE trainer's input).

    Iterating yields one (n, d_in) float tensor per shard; ``manifest`` has model, layer,
    hook, d_in, n_tokens.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file() and (self.path / RANK_DIR.format(0)).is_dir():
            raise FileNotFoundError(f"the distributed activation store {self.path} is not "
                                    "finished (no merged manifest.json yet): rerun the capture "
                                    "with the same number of processes to finish it")
        if not mpath.is_file():
            raise FileNotFoundError(f"no activation store at {self.path} (missing {MANIFEST}); "
                                    "write one with probes.activation_writer.write_activations")
        self.manifest = json.loads(mpath.read_text(encoding="utf-8"))

    @property
    def d_in(self) -> int:
        return int(self.manifest["d_in"])

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["n_tokens"])

    def __len__(self) -> int:
        return len(self.manifest["shards"])

    def __iter__(self) -> Iterator[torch.Tensor]:
        for shard in self.manifest["shards"]:
            x = load_file(str(self.path / shard["file"]))[TENSOR_KEY]  # (n, d_in)
            if x.shape != (shard["n_tokens"], self.d_in):
                raise ValueError(f"shard {shard['file']} has shape {tuple(x.shape)}, manifest "
                                 f"says ({shard['n_tokens']}, {self.d_in}): rewrite the store")
            yield x

    def load_all(self) -> torch.Tensor:
        """Every stored token in one (n, d_in) tensor."""
        parts = list(self)
        return torch.cat(parts) if parts else torch.empty(0, self.d_in)
