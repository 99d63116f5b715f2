"""Save and load attention SAEs in SAE-Lens' own on-disk format.

A saved SAE is a folder with `cfg.json` (with an `architecture` key) and
`sae_weights.safetensors`, exactly what `sae_lens.SAE.save_model` writes, so
`sae_lens.SAE.load_from_disk(path)` loads ours and `load_sae` loads SAE-Lens' (including
converted pretrained hook_z releases such as Kissane et al.'s `gpt2-small-hook-z-kk`, fetched
with `sae_lens.SAE.from_pretrained` where the hub is reachable).

    save_sae(sae, "runs/x/sae")            # training or inference SAE
    sae = load_sae("runs/x/sae")           # -> sae_lens.SAE (inference class)
    sae = load_shipped("organism", 1)      # data/saes/organism/layer1
    sae = resolve_sae("shipped", "organism", 1)   # or a path, or "sae_lens:<release>/<id>"

Files are written into a temporary folder and moved into place one by one (`os.replace`), so
an interrupted save never leaves a half-written weights file under the final name.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "data" / "saes"
HOOK_Z_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")


def to_inference(sae):
    """The inference SAE of a SAE-Lens training SAE (SAE-Lens' own conversion).

    For TopK SAEs trained with `rescale_acts_by_decoder_norm`, SAE-Lens folds the decoder
    norms into the encoder when saving; the decoder rows are then unit-norm and the flag is
    turned off, which changes nothing but float rounding (~1e-7) and keeps the encode math
    the plain `(x - b_dec) W_enc + b_enc` that `saes.encode` and the DFA use.
    """
    import sae_lens

    if not isinstance(sae, sae_lens.TrainingSAE):
        return sae
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        out = sae_lens.SAE.load_from_disk(tmp, device=str(sae.device))
    if getattr(out.cfg, "rescale_acts_by_decoder_norm", False):
        norms = out.W_dec.detach().norm(dim=-1)
        if torch.allclose(norms, torch.ones_like(norms), atol=1e-5):
            out.cfg.rescale_acts_by_decoder_norm = False
    return out.eval()


def save_sae(sae, path: str | Path, **metadata) -> Path:
    """Save `sae` (training or inference) in SAE-Lens format under folder `path`.

    Extra keyword arguments go into `cfg.metadata` (JSON-serialisable values only).
    """
    sae = to_inference(sae)
    for key, value in metadata.items():
        sae.cfg.metadata[key] = value
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp:
        weights, cfg = sae.save_model(tmp)
        for written in (weights, cfg):  # weights first: cfg.json marks a complete save
            os.chmod(written, 0o644)  # files in a TemporaryDirectory may be private
            os.replace(written, path / Path(written).name)
    return path


def load_sae(path: str | Path, device: str | torch.device = "cpu"):
    """Load an SAE-Lens-format SAE folder as an inference `sae_lens.SAE`, in eval mode."""
    import sae_lens

    path = Path(path)
    if not (path / "cfg.json").is_file():
        raise FileNotFoundError(
            f"no SAE at {path} (expected cfg.json and sae_weights.safetensors, as written by "
            "`attnlab sae train` or sae_lens' save_model)"
        )
    sae = sae_lens.SAE.load_from_disk(str(path), device=str(device))
    return sae.eval()


def sae_layer(sae) -> int | None:
    """The layer of a hook_z SAE, read from its `hook_name` metadata (None if absent)."""
    hook = sae.cfg.metadata.get("hook_name")
    m = HOOK_Z_RE.match(str(hook)) if hook else None
    return int(m.group(1)) if m else None


def shipped_path(model: str, layer: int) -> Path:
    return SHIPPED_ROOT / model / f"layer{int(layer)}"


def list_shipped() -> list[tuple[str, int, Path]]:
    """(model, layer, path) of every SAE shipped in data/saes."""
    out = []
    for cfg in sorted(SHIPPED_ROOT.glob("*/layer*/cfg.json")):
        folder = cfg.parent
        out.append((folder.parent.name, int(folder.name.removeprefix("layer")), folder))
    return out


def load_shipped(model: str, layer: int, device: str | torch.device = "cpu"):
    """The SAE shipped for `model`'s attention layer `layer`."""
    path = shipped_path(model, layer)
    if not (path / "cfg.json").is_file():
        have = ", ".join(f"{m} layer {la}" for m, la, _ in list_shipped()) or "none"
        raise FileNotFoundError(
            f"no shipped SAE for {model!r} layer {layer} (shipped: {have}); rebuild the shipped "
            f"ones with `attnlab sae ship --model {model} --layers {layer}`, or train one with "
            f"`attnlab sae train --model {model} --layer {layer}` and pass its folder as --sae"
        )
    return load_sae(path, device)


def load_pretrained(release: str, sae_id: str, device: str | torch.device = "cpu"):
    """A pretrained SAE-Lens release, e.g. ("gpt2-small-hook-z-kk", "blocks.5.hook_z")
    (Kissane et al.'s attention SAEs); needs the hub or a local Hugging Face cache."""
    import sae_lens

    try:
        sae = sae_lens.SAE.from_pretrained(release, sae_id, device=str(device))
    except ValueError:
        raise
    except Exception as exc:  # the hub stack raises many types; one clear error is the contract
        raise FileNotFoundError(
            f"SAE-Lens release {release!r} / {sae_id!r} could not be loaded "
            f"({type(exc).__name__}: {str(exc)[:200]}); it needs the Hugging Face hub or cache"
        ) from None
    return (sae[0] if isinstance(sae, tuple) else sae).eval()


def resolve_sae(spec: str | Path, model: str, layer: int, device="cpu"):
    """`spec` is "shipped" (data/saes/<model>/layer<L>), "sae_lens:<release>/<sae_id>"
    (a pretrained SAE-Lens release), or a path to an SAE folder."""
    if str(spec) == "shipped":
        return load_shipped(model, layer, device)
    if str(spec).startswith("sae_lens:"):
        release, _, sae_id = str(spec).removeprefix("sae_lens:").partition("/")
        if not sae_id:
            raise ValueError("use sae_lens:<release>/<sae_id>, e.g. "
                             "sae_lens:gpt2-small-hook-z-kk/blocks.5.hook_z")
        return load_pretrained(release, sae_id, device)
    return load_sae(spec, device)
