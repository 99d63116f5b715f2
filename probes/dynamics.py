"""The organism trainer's checkpoint statistics, computed by the probes themselves.

``data.organism.train`` sits below ``probes`` and cannot import it, so it takes checkpoint
callbacks; ``attnlab organism train`` passes :func:`checkpoint_statistics`, which runs the
checkpoint once on the trainer's fixed probe rows under :func:`probes.capture.capture` with
the entropy and massive-activation accumulators. The dynamics table then holds exactly what
``run_probes`` reports for those rows:

- ``massive_max`` (per layer): ``massive_summary``'s ``top1_max``, the largest
  |resid_post| over real tokens and dims;
- ``massive_ratio`` (per layer): ``massive_summary``'s ``ratio``, the mean over sequences of
  top-1 / median |resid_post| (Sun et al. 2024's ratio; "Hidden Dynamics"' r(t));
- ``entropy`` (per layer, head): the entropy probe's ``mean``, the mean attention entropy over
  real query positions (docs/METHODS.md §1).
"""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer

from data.organism.dynamics import row
from data.organism.model import Batch
from probes.capture import capture
from probes.entropy import EntropyConfig, entropy_hooks
from probes.massive import massive_hooks

# the weight-based entropy bound is not part of the table: skip its eigenvalue problems
ENTROPY = EntropyConfig(weight_bound=False)


@torch.no_grad()
def checkpoint_statistics(step: int, model: HookedTransformer, probe: Batch) -> list[dict]:
    """Dynamics rows of one checkpoint (a ``data.organism.dynamics.CheckpointCallback``)."""
    entropy, massive = entropy_hooks(model, config=ENTROPY), massive_hooks(model)
    hooks: dict = {}
    for plan in (entropy, massive):
        for name, acc in plan.hooks.items():
            hooks.setdefault(name, []).append(acc)
    with capture(model, hooks) as cap, cap.batch(probe.mask):
        model(probe.tokens)  # (batch, pos) right-padded: causal, so padding changes nothing
    rows = []
    for ent, mas in zip(entropy.accumulators, massive.accumulators):
        summary = mas.summary().set_index("stat").value
        layer = mas.layer
        rows += [row(step, "massive_max", summary["top1_max"], layer),
                 row(step, "massive_ratio", summary["ratio"], layer)]
        mean = ent.result().query("stat == 'mean'")
        rows += [row(step, "entropy", v, layer, h) for h, v in zip(mean["head"], mean["value"])]
    return rows
