"""Task datasets for causal analyses: clean/corrupted prompt pairs on the organism.

``load_task(name, n, seed)`` returns a :class:`TaskDataset` of ``n`` held-out items of one
organism task family (``TASKS``): ``induction``, ``ioi``, ``recall``, ``reasoning``
(definitions in :mod:`data.organism.corpus`). Every item is a (clean, corrupted) pair of
equal token length that differs in one token and whose single-token answers differ.

Layout decision: within a task every prompt has the same length (fixed templates), so the
tokens are plain ``(batch, pos)`` tensors (``batch`` = the ``n`` items) with no padding;
``<bos>`` is at position 0 (TransformerLens convention) and the scored position is the last
one (``last_pos`` holds it per item, all equal to ``pos - 1``, for code that wants to be
general).

Metrics (docs/METHODS.md §4): :func:`logit_diff` = logit(answer) - logit(corrupted answer) at
``last_pos`` (positive on clean runs of a working model, negative on corrupted ones);
:func:`accuracy` = top-1 accuracy on the clean answer.

    ds = load_task("ioi", n=200, seed=0)
    model = load_model("organism").model
    logit_diff(model(ds.clean_tokens), ds).mean()
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from data.organism.corpus import FAMILIES, make_items
from data.organism.evaluate import encode_items
from data.organism.load import CONFIG_FILE, PACKAGE_DIR
from data.organism.world import World, make_world

TASKS: tuple[str, ...] = FAMILIES
_DEFAULT_WORLD = {"seed": 0, "n_people": 300}  # the shipped organism's world


@dataclass(frozen=True)
class TaskDataset:
    """``n`` clean/corrupted prompt pairs of one task, ready for patching."""

    name: str  # task name (one of TASKS)
    seed: int  # sampling seed of the items
    clean_tokens: torch.Tensor  # (batch, pos) long, <bos> at 0, no padding
    corrupted_tokens: torch.Tensor  # (batch, pos) long, differs from clean in one position
    answer_ids: torch.Tensor  # (batch,) long: correct next token of the clean prompt
    corrupted_answer_ids: torch.Tensor  # (batch,) long: correct next token of the corrupted one
    last_pos: torch.Tensor  # (batch,) long: the scored position (pos - 1 for every item)
    clean_prompts: tuple[str, ...]  # prompts as text (without <bos>)
    corrupted_prompts: tuple[str, ...]
    answers: tuple[str, ...]  # answer words
    corrupted_answers: tuple[str, ...]
    variants: tuple[str, ...]  # template/order/relation of each item, for splitting results

    def __post_init__(self) -> None:
        n, pos = self.clean_tokens.shape
        if self.corrupted_tokens.shape != (n, pos):
            raise ValueError("clean and corrupted tokens must have equal shapes")
        for name in ("answer_ids", "corrupted_answer_ids", "last_pos"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if bool((self.answer_ids == self.corrupted_answer_ids).any()):
            raise ValueError("every clean answer must differ from its corrupted answer")

    def __len__(self) -> int:
        return self.clean_tokens.shape[0]

    @property
    def n_pos(self) -> int:
        return self.clean_tokens.shape[1]


def list_tasks() -> list[str]:
    """Names accepted by :func:`load_task`."""
    return list(TASKS)


def organism_world() -> World:
    """The world of the shipped organism (its seed is read from organism.json when present)."""
    path = PACKAGE_DIR / CONFIG_FILE
    spec = json.loads(path.read_text())["world"] if path.exists() else _DEFAULT_WORLD
    return make_world(spec["seed"], spec["n_people"])


def load_task(name: str, n: int = 200, seed: int = 0, world: World | None = None) -> TaskDataset:
    """``n`` held-out items of task ``name`` (deterministic in ``seed``) as tensors.

    ``world`` defaults to the shipped organism's world (recall answers depend on it).
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    world = world if world is not None else organism_world()
    items = make_items(name, n, seed, world)
    w2i = {w: i for i, w in enumerate(world.vocab)}
    t = encode_items(items, w2i)
    n_pos = t.clean.shape[1]
    return TaskDataset(
        name=name, seed=seed, clean_tokens=t.clean, corrupted_tokens=t.corrupted,
        answer_ids=t.answer, corrupted_answer_ids=t.corrupted_answer,
        last_pos=torch.full((n,), n_pos - 1, dtype=torch.long),
        clean_prompts=tuple(" ".join(it.prompt) for it in items),
        corrupted_prompts=tuple(" ".join(it.corrupted_prompt) for it in items),
        answers=tuple(it.answer for it in items),
        corrupted_answers=tuple(it.corrupted_answer for it in items),
        variants=tuple(it.variant for it in items),
    )


def _scored_logits(logits: torch.Tensor, dataset: TaskDataset) -> torch.Tensor:
    """(batch, d_vocab) logits at each item's scored position.

    Accepts (batch, pos, d_vocab) logits, or (batch, d_vocab) ones already taken there.
    """
    if logits.dim() == 2:
        return logits
    if logits.dim() != 3 or logits.shape[0] != len(dataset):
        raise ValueError(f"logits must be (n={len(dataset)}, pos, vocab) or (n, vocab), "
                         f"got {tuple(logits.shape)}")
    idx = torch.arange(len(dataset), device=logits.device)
    return logits[idx, dataset.last_pos.to(logits.device)]


def logit_diff(logits: torch.Tensor, dataset: TaskDataset) -> torch.Tensor:
    """(batch,) logit(answer) - logit(corrupted answer) at the scored position."""
    last = _scored_logits(logits, dataset)
    ans = dataset.answer_ids.to(last.device)[:, None]
    c_ans = dataset.corrupted_answer_ids.to(last.device)[:, None]
    return (last.gather(-1, ans) - last.gather(-1, c_ans))[:, 0]


def accuracy(logits: torch.Tensor, dataset: TaskDataset) -> float:
    """Top-1 accuracy of the clean answer at the scored position."""
    pred = _scored_logits(logits, dataset).argmax(-1)
    return (pred == dataset.answer_ids.to(pred.device)).float().mean().item()
