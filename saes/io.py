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
an interrupted save never leaves a half-written weights file under the final name. A folder
that cannot be loaded (a truncated weights file, a cfg.json lacking a field) is an
:class:`SAEFileError` naming the file, never the loader's own exception.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads with the first SAE, not with `attnlab sae list`
    import torch

SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "data" / "saes"
HOOK_Z_RE = re.compile(r"^blocks\.(\d+)\.attn\.hook_z$")
CFG_FILE, WEIGHTS_FILE = "cfg.json", "sae_weights.safetensors"  # SAE-Lens' file names
REQUIRED_CFG = ("d_in", "d_sae")  # cfg.json fields every SAE-Lens SAE has
REPAIR = "re-copy the folder, or retrain it (`attnlab sae train ... --out FOLDER`)"
RESCALE = "rescale_acts_by_decoder_norm"  # SAE-Lens' TopK flag (see save_sae)
UNIT_NORM_ATOL = 1e-5  # decoder rows within this of norm 1 count as unit-norm


class SAEFileError(ValueError):
    """An SAE folder whose files cannot be loaded; the message names the file."""


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
    return plain_if_unit_norm(out).eval()


def unit_norm_decoder(sae) -> bool:
    """Whether every decoder row of ``sae`` has norm 1 (within :data:`UNIT_NORM_ATOL`)."""
    import torch

    norms = sae.W_dec.detach().norm(dim=-1)
    return bool(torch.allclose(norms, torch.ones_like(norms), atol=UNIT_NORM_ATOL))


def plain_if_unit_norm(sae):
    """``sae`` with SAE-Lens' TopK ``rescale_acts_by_decoder_norm`` turned off where the
    decoder is unit-norm: the flag then scales by 1, and off it the encode is the plain
    ``(x - b_dec) W_enc + b_enc`` that ``saes.encode``'s fused kernel and the DFA use."""
    if getattr(sae.cfg, RESCALE, False) and unit_norm_decoder(sae):
        setattr(sae.cfg, RESCALE, False)
    return sae


def save_sae(sae, path: str | Path, **metadata) -> Path:
    """Save `sae` (training or inference) in SAE-Lens format under folder `path`.

    Extra keyword arguments go into `cfg.metadata` (JSON-serialisable values only).

    A TopK SAE whose decoder is unit-norm is saved with ``rescale_acts_by_decoder_norm:
    true``. With unit-norm rows the flag multiplies by 1, so encode and decode are unchanged
    (float rounding, ~1e-7), but it is what SAE-Lens asks before it will fold the decoder norms:
    ``TopKSAE.fold_W_dec_norm()`` refuses an SAE saved with ``false`` (it could change which k
    features win), and SAE-Lens-based clients call it on load (sae-dashboard's runner,
    Neuronpedia's), so they load ours without patches. :func:`load_sae` turns the flag back
    off in memory (:func:`plain_if_unit_norm`).
    """
    sae = to_inference(sae)
    for key, value in metadata.items():
        sae.cfg.metadata[key] = value
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path, prefix=".saving-") as tmp:
        weights, cfg = sae.save_model(tmp)
        if hasattr(sae.cfg, RESCALE) and unit_norm_decoder(sae):
            mark_foldable(Path(cfg))
        for written in (weights, cfg):  # weights first: cfg.json marks a complete save
            os.chmod(written, 0o644)  # files in a TemporaryDirectory may be private
            os.replace(written, path / Path(written).name)
    return path


def mark_foldable(cfg_file: Path) -> None:
    """Set ``rescale_acts_by_decoder_norm: true`` in a TopK SAE's cfg.json (the caller has
    checked that its decoder is unit-norm; see :func:`save_sae`). Written atomically."""
    from data.store import atomic_write_text

    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg[RESCALE] = True
    atomic_write_text(cfg_file, json.dumps(cfg))  # one line, as SAE-Lens writes it


def load_sae(path: str | Path, device: str | torch.device = "cpu"):
    """Load an SAE-Lens-format SAE folder as an inference `sae_lens.SAE`, in eval mode."""
    import sae_lens

    path = Path(path)
    if not (path / CFG_FILE).is_file():
        raise FileNotFoundError(_no_sae(path))
    _check_cfg(path)
    try:
        sae = sae_lens.SAE.load_from_disk(str(path), device=str(device))
    except FileNotFoundError:
        raise
    except Exception as exc:  # SAE-Lens, safetensors and torch raise many types
        what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        if "safetensor" in what.lower():
            raise SAEFileError(f"SAE {path}: {WEIGHTS_FILE} is truncated or corrupt ({what}); "
                               f"{REPAIR}") from exc
        raise SAEFileError(f"SAE {path} cannot be loaded ({what}): {CFG_FILE} and "
                           f"{WEIGHTS_FILE} do not match or are damaged; {REPAIR}") from exc
    return plain_if_unit_norm(sae).eval()


def _no_sae(path: Path) -> str:
    return (f"no SAE at {path} (expected {CFG_FILE} and {WEIGHTS_FILE}, as written by "
            "`attnlab sae train` or sae_lens' save_model)")


def _check_cfg(path: Path) -> None:
    """cfg.json is a JSON object with the fields every SAE-Lens SAE needs."""
    try:
        cfg = json.loads((path / CFG_FILE).read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SAEFileError(f"SAE {path}: {CFG_FILE} is not valid JSON ({exc}); {REPAIR}") from None
    if not isinstance(cfg, dict):
        raise SAEFileError(f"SAE {path}: {CFG_FILE} is not a JSON object; {REPAIR}")
    missing = [k for k in REQUIRED_CFG if k not in cfg]
    if missing:
        raise SAEFileError(f"SAE {path}: {CFG_FILE} lacks the field(s) {', '.join(missing)}; "
                           f"{REPAIR}")


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
    if not (path / CFG_FILE).is_file():
        raise FileNotFoundError(_no_shipped(model, layer))
    return load_sae(path, device)


def _no_shipped(model: str, layer: int) -> str:
    have = ", ".join(f"{m} layer {la}" for m, la, _ in list_shipped()) or "none"
    return (f"no shipped SAE for {model!r} layer {layer} (shipped: {have}); rebuild the shipped "
            f"ones with `attnlab sae ship --model {model} --layers {layer}`, or train one with "
            f"`attnlab sae train --model {model} --layer {layer}` and pass its folder as --sae")


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


def _pretrained_ids(spec: str) -> tuple[str, str]:
    """(release, sae_id) of ``sae_lens:<release>/<sae_id>``; ValueError when either is empty."""
    release, _, sae_id = spec.removeprefix("sae_lens:").partition("/")
    if not release or not sae_id:
        raise ValueError(f"SAE {spec!r}: use sae_lens:<release>/<sae_id>, e.g. "
                         "sae_lens:gpt2-small-hook-z-kk/blocks.5.hook_z")
    return release, sae_id


def check_sae_spec(spec: str | Path, model: str, layer: int) -> None:
    """Raise what :func:`resolve_sae` would for a spec that names no SAE, loading nothing
    (the CLI checks ``--sae`` before it loads the model)."""
    if str(spec) == "shipped":
        if not (shipped_path(model, layer) / CFG_FILE).is_file():
            raise FileNotFoundError(_no_shipped(model, layer))
    elif str(spec).startswith("sae_lens:"):
        _pretrained_ids(str(spec))
    elif not (Path(spec) / CFG_FILE).is_file():
        raise FileNotFoundError(_no_sae(Path(spec)))


def resolve_sae(spec: str | Path, model: str, layer: int, device="cpu"):
    """`spec` is "shipped" (data/saes/<model>/layer<L>), "sae_lens:<release>/<sae_id>"
    (a pretrained SAE-Lens release), or a path to an SAE folder."""
    if str(spec) == "shipped":
        return load_shipped(model, layer, device)
    if str(spec).startswith("sae_lens:"):
        return load_pretrained(*_pretrained_ids(str(spec)), device)
    return load_sae(spec, device)
