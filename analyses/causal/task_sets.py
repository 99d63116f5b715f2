"""Which task datasets a causal analysis loads for a model, and which families it contrasts.

Why: :mod:`data.tasks` holds tasks per model (``MODEL_TASKS``: the organism's in its own
vocabulary, SmolLM2's as English text), and a model's tokens only make sense to that model.
The causal analyses (``attnlab patch``/``ablate``/``report circuit``) therefore load a task
through :func:`load_model_task`, run only the tasks the model actually does by default
(:func:`analysis_tasks`, ``data.tasks.default_tasks``), and contrast, in selective
impairment, a recall family with an in-context family that the model does
(:func:`impairment_tasks`).

Models without their own tasks (TransformerLens hub models) keep the organism's tasks, as
before per-model tasks existed.

    >>> ds = load_model_task("smollm2", "ioi", n=8, seed=0)
    >>> impairment_tasks("smollm2")
    ('recall', 'ioi')
"""

from __future__ import annotations

#: The two families whose top heads selective impairment ablates, per model. The organism
#: contrasts recall (facts stored in the weights) with reasoning (in-context binding). On
#: SmolLM2 reasoning is not a working task (clean top-1 0.03, data.tasks), so the in-context
#: side is ioi: moving a name from the context (top-1 0.87).
IMPAIRMENT_TASKS: dict[str, tuple[str, ...]] = {"organism": ("recall", "reasoning"),
                                                "smollm2": ("recall", "ioi")}
#: Default prompt pairs of an exact patching sweep, for models where the command-wide default
#: (64) would take an hour: on SmolLM2 (270 heads, hook engine, CPU) an exact z sweep costs
#: ~40 s per pair on one shared thread (analyses.causal.circuit.SMOLLM2_DEFAULTS).
EXACT_PAIRS: dict[str, int] = {"smollm2": 8}
IMPAIRMENT_WHY: dict[str, str] = {
    "organism": "recall (facts in the weights) vs reasoning (in-context binding)",
    "smollm2": "recall (facts in the weights) vs ioi (a name moved from the context); "
               "reasoning is not used: SmolLM2 does not do it (clean top-1 0.03)",
}


def task_model(model_name: str) -> str:
    """The ``data.tasks`` model whose tasks ``model_name`` runs (the organism's by default)."""
    from data.tasks import MODEL_TASKS

    return model_name if model_name in MODEL_TASKS else "organism"


def model_tasks(model_name: str) -> list[str]:
    """Every task ``model_name`` has (``data.tasks.list_tasks``)."""
    from data.tasks import list_tasks

    return list_tasks(task_model(model_name))


def analysis_tasks(model_name: str) -> list[str]:
    """The tasks the model does (clean top-1 >= 0.6): the ones analyses run by default."""
    from data.tasks import default_tasks

    return default_tasks(task_model(model_name))


def load_model_task(model_name: str, task: str, n: int, seed: int):
    """``data.tasks.load_task`` in the vocabulary of ``model_name``."""
    from data.tasks import load_task

    return load_task(task, n=n, seed=seed, model=task_model(model_name))


def exact_pairs(model_name: str, default: int | None = None) -> int | None:
    """The default number of pairs of an exact sweep on ``model_name`` (``default`` if none)."""
    return EXACT_PAIRS.get(model_name, default)


def impairment_tasks(model_name: str) -> tuple[str, ...]:
    """The default families contrasted by selective impairment on ``model_name``."""
    return IMPAIRMENT_TASKS[task_model(model_name)]


def impairment_note(model_name: str, tasks: tuple[str, ...]) -> str:
    """One line for reports and manifests: which families were contrasted, and why."""
    why = IMPAIRMENT_WHY.get(task_model(model_name), "")
    default = tuple(tasks) == impairment_tasks(model_name)
    return (f"selective impairment contrasts {' vs '.join(tasks)}"
            + (f": {why}" if default and why else " (chosen by the user)"))


def check_tasks(model_name: str, tasks) -> tuple[str, ...]:
    """``tasks`` as a tuple if each is a task of the model, once; else a ValueError."""
    have = model_tasks(model_name)
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in have]
    if bad or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks {list(tasks)}: give one or more distinct tasks of model "
                         f"{model_name!r}, from {have}")
    return tasks


def model_note(model_name: str) -> str:
    """What the model is, where a result on it is shown ('' for attnlab's own models)."""
    if model_name != "smollm2":
        return ""
    from data.smollm2 import GGUF_FILE

    return (f"SmolLM2-135M-Instruct in the Q4_1 quantisation ({GGUF_FILE}), dequantised to "
            "fp32")
