#!/usr/bin/env bash
# One command on a fresh machine: set up, then run `attnlab demo` (~1-2 min), which writes a run
# for every dashboard page (MiniLM probes; SmolLM2 probes + IOI attribution; organism redundancy,
# circuit report, SAE features).
# Extra arguments go to `attnlab demo`, e.g. `bash scripts/demo.sh --quick`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
set -euo pipefail
attnlab demo "$@"
