"""Where the shipped organism's artefacts live, with no heavy import.

``attnlab models`` checks these files without importing torch or TransformerLens (it must
answer in well under 2 s); :mod:`data.organism.load` re-exports the names.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_FILE, CONFIG_FILE = "organism.safetensors", "organism.json"
VOCAB_FILE, DYNAMICS_FILE = "vocab.json", "organism_dynamics.parquet"
SHIPPED = (WEIGHTS_FILE, CONFIG_FILE, VOCAB_FILE, DYNAMICS_FILE)


def checkpoint_files(path: str | Path | None = None) -> list[Path]:
    """The files ``load_organism`` needs (weights first), whether or not they exist."""
    folder = Path(path) if path is not None else PACKAGE_DIR
    return [folder / WEIGHTS_FILE, folder / CONFIG_FILE, folder / VOCAB_FILE]
