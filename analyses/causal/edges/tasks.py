"""Task variants for edge circuits: the organism's induction task with its keys corrupted.

``data.tasks``' induction pair corrupts the token s[k] that the induction heads copy (their
values): the layer-0 previous-token heads' outputs at position k are then equal in both runs,
so no patching method, EAP included, can see the previous-token -> induction-key edges
(``tests/analyses/causal/test_patching_organism.py`` explains it for heads). The key variant
corrupts s[k-1] in the first copy instead: the previous-token head at position k now writes a
different token, the induction heads' key there no longer matches the query s[k-1], and the
answer s[k] is lost. The scored contrast stays logit(s[k]) - logit(w), w the original
corruption's word (absent from both prompts).
"""

from __future__ import annotations

import dataclasses

import torch

EDGE_TASKS = ("induction-keys",)


def induction_keys(dataset):
    """The key-corrupted variant of a ``data.tasks`` induction dataset (module docstring)."""
    if dataset.name != "induction":
        raise ValueError(f"induction-keys is built from the induction task, got {dataset.name!r}")
    diff = dataset.clean_tokens != dataset.corrupted_tokens  # (batch, pos): one True per row
    if not bool((diff.sum(1) == 1).all()):
        raise ValueError("every induction pair must differ in exactly one position")
    k = diff.float().argmax(1)  # (batch,) position of s[k]
    if bool((k < 2).any()):
        raise ValueError("the corrupted token must have a predecessor after BOS")
    rows = torch.arange(len(k))
    corrupted = dataset.clean_tokens.clone()
    corrupted[rows, k - 1] = dataset.corrupted_tokens[rows, k]
    return dataclasses.replace(dataset, name="induction-keys", corrupted_tokens=corrupted)


def load_edge_task(model_name: str, task: str, n: int, seed: int):
    """A ``data.tasks`` task of ``model_name``, or one of :data:`EDGE_TASKS`."""
    from analyses.causal.task_sets import load_model_task

    if task == "induction-keys":
        return induction_keys(load_model_task(model_name, "induction", n, seed))
    return load_model_task(model_name, task, n, seed)
