"""Read hook_z activations for SAE training from the probes' activation shards.

The shards are written by `probes.activation_writer.write_activations` (one layer's hook_z,
real tokens only, heads flattened in SAE-Lens' hook_z layout) and read here through its
`ActivationShards` reader; this module only checks that the store fits the SAE to train.
A store written by several torchrun ranks (one `rank_00r/` folder each) reads the same way:
its merged manifest lists every rank's shards in prompt order.

    acts = read_hook_z("acts/organism_L1", layer=1, n_tokens=200_000)   # (n, d_in)
    train_attention_sae(loaded, 1, cfg, activations=acts)
"""

from __future__ import annotations

import torch
from torch import Tensor


def read_hook_z(
    path, layer: int | None = None, n_tokens: int | None = None, model: str | None = None
) -> Tensor:
    """The first `n_tokens` (default: all) stored rows, (n, d_in) float32.

    Raises ValueError when the store holds another hook, layer or model than asked for.
    """
    from probes.activation_writer import ActivationShards

    shards = ActivationShards(path)
    m = shards.manifest
    hook = str(m.get("hook", ""))
    if not hook.endswith("attn.hook_z"):
        raise ValueError(f"activation store {path} holds {hook!r}, not an attention hook_z")
    if layer is not None and int(m.get("layer", -1)) != int(layer):
        raise ValueError(f"activation store {path} holds layer {m.get('layer')}, not {layer}: "
                         "write the shards for this layer or pass its --layer")
    if model is not None and m.get("model") not in (None, model):
        raise ValueError(f"activation store {path} was written from model {m.get('model')!r}, "
                         f"not {model!r}")
    if not m.get("complete", True):
        raise ValueError(f"activation store {path} is incomplete: rerun write_activations "
                         "with the same prompts to finish it")
    parts, have = [], 0
    for x in shards:
        parts.append(x.float())
        have += x.shape[0]
        if n_tokens is not None and have >= n_tokens:
            break
    if not parts:
        raise ValueError(f"activation store {path} holds no tokens")
    acts = torch.cat(parts)
    return acts[:n_tokens] if n_tokens is not None else acts
