"""Task datasets for causal analyses: clean/corrupted prompt pairs, per model.

``load_task(name, n, seed)`` returns a :class:`TaskDataset` of ``n`` held-out items of one
organism task family (``TASKS``): ``induction``, ``ioi``, ``recall``, ``reasoning``
(definitions in :mod:`data.organism.corpus`). ``load_task(name, n, seed, model="smollm2")``
returns the same four families written as real English text for SmolLM2's tokenizer
(definitions in :mod:`data.text_tasks`). Every item is a (clean, corrupted) pair of equal
token length that differs in one token and whose single-token answers differ.

Which tasks a model has: :func:`list_tasks` (``MODEL_TASKS``); which of them the model
actually does (top-1 >= 0.6 on clean prompts, n = 100, seed 0) and are used by default:
:func:`default_tasks` (``DEFAULT_TASKS``).

Layout decision: within a task every prompt has the same length (fixed templates, single-token
words), so the tokens are plain ``(batch, pos)`` tensors (``batch`` = the ``n`` items) with no
padding; BOS is at position 0 (TransformerLens convention: ``<bos>`` for the organism,
``<|endoftext|>`` for SmolLM2) and the scored position is the last one (``last_pos`` holds it
per item, all equal to ``pos - 1``, for code that wants to be general). The length does not
depend on ``n`` or ``seed``.

Metrics (docs/METHODS.md §4): :func:`logit_diff` = logit(answer) - logit(corrupted answer) at
``last_pos`` (positive on clean runs of a working model, negative on corrupted ones; for the
text ``ioi`` the corrupted answer is the subject, so it is logit(IO) - logit(S) and about 0 on
the ABC prompt); :func:`accuracy` = top-1 accuracy on the clean answer.

    ds = load_task("ioi", n=200, seed=0)
    model = load_model("organism").model
    logit_diff(model(ds.clean_tokens), ds).mean()
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

from data.organism.corpus import FAMILIES, make_items
from data.organism.evaluate import encode_items
from data.organism.load import CONFIG_FILE, PACKAGE_DIR
from data.organism.world import World, make_world
from data.text_tasks import TEXT_TASKS, TextItem, make_text_items

TASKS: tuple[str, ...] = FAMILIES  # the organism's tasks
MODEL_TASKS: dict[str, tuple[str, ...]] = {"organism": FAMILIES, "smollm2": TEXT_TASKS}
# The families each model does: clean top-1 >= 0.6 at n=100, seed 0 (checked by
# tests/data/test_text_tasks.py). SmolLM2-135M-Instruct (Q4_1), CPU float32:
#   task       top-1  logit diff clean  corrupted
#   induction  0.93   10.80             -10.97
#   ioi        0.87    4.35               0.27   (logit(IO) - logit(S); corrupted = ABC)
#   recall     0.81   11.36             -10.76
#   reasoning  0.03    0.81              -0.97   (not a default: see data.text_tasks)
DEFAULT_TASKS: dict[str, tuple[str, ...]] = {"organism": FAMILIES,
                                             "smollm2": ("induction", "ioi", "recall")}
_DEFAULT_WORLD = {"seed": 0, "n_people": 300}  # the shipped organism's world


@dataclass(frozen=True)
class TaskDataset:
    """``n`` clean/corrupted prompt pairs of one task, ready for patching."""

    name: str  # task name (one of list_tasks(model))
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
    model: str = "organism"  # the model whose vocabulary the tokens are in (MODEL_TASKS)

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

    def rows(self, rows: slice) -> TaskDataset:
        """The items at ``rows`` (every per-item field, tensors and tuples, sliced)."""
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), (torch.Tensor, tuple))})


def _model_tasks(model: str) -> tuple[str, ...]:
    if model not in MODEL_TASKS:
        raise ValueError(f"no tasks for model {model!r}; choose from {list(MODEL_TASKS)}")
    return MODEL_TASKS[model]


def list_tasks(model: str = "organism") -> list[str]:
    """Names accepted by :func:`load_task` for ``model``."""
    return list(_model_tasks(model))


def default_tasks(model: str = "organism") -> list[str]:
    """The tasks ``model`` actually does (clean top-1 >= 0.6): what analyses run by default."""
    _model_tasks(model)
    return list(DEFAULT_TASKS[model])


def organism_world() -> World:
    """The world of the shipped organism (its seed is read from organism.json when present)."""
    path = PACKAGE_DIR / CONFIG_FILE
    spec = json.loads(path.read_text())["world"] if path.exists() else _DEFAULT_WORLD
    return make_world(spec["seed"], spec["n_people"])


def load_task(name: str, n: int = 200, seed: int = 0, world: World | None = None,
              model: str = "organism") -> TaskDataset:
    """``n`` held-out items of task ``name`` for ``model`` (deterministic in ``seed``).

    ``world`` (organism only) defaults to the shipped organism's world (recall answers depend
    on it). ``model="smollm2"`` tokenizes with SmolLM2's cached tokenizer
    (:func:`data.smollm2.load_tokenizer`).
    """
    tasks = _model_tasks(model)
    if name not in tasks:
        where = "" if model == "organism" else f" of model {model!r}"
        raise ValueError(f"unknown task {name!r}{where}; choose from {list(tasks)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if model != "organism":
        if world is not None:
            raise ValueError("world is the organism's; text tasks take none")
        return _text_task(name, n, seed, model)
    world = world if world is not None else organism_world()
    items = make_items(name, n, seed, world)
    w2i = world.word_ids
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


def _text_task(name: str, n: int, seed: int, model: str) -> TaskDataset:
    """A text family (:mod:`data.text_tasks`) under ``model``'s tokenizer, as tensors."""
    from data.smollm2 import load_tokenizer

    items: list[TextItem] = make_text_items(name, n, seed, load_tokenizer())

    def col(field: str) -> torch.Tensor:
        return torch.tensor([getattr(it, field) for it in items], dtype=torch.long)

    n_pos = len(items[0].clean)
    return TaskDataset(
        name=name, seed=seed, clean_tokens=col("clean"), corrupted_tokens=col("corrupted"),
        answer_ids=col("answer"), corrupted_answer_ids=col("corrupted_answer"),
        last_pos=torch.full((n,), n_pos - 1, dtype=torch.long),
        clean_prompts=tuple(it.clean_prompt for it in items),
        corrupted_prompts=tuple(it.corrupted_prompt for it in items),
        answers=tuple(it.answer_text for it in items),
        corrupted_answers=tuple(it.corrupted_answer_text for it in items),
        variants=tuple(it.variant for it in items), model=model,
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
