"""Whether this process was started by torchrun, from its environment only (no torch import).

Every command asks this before it runs (:mod:`analyses.cli.launch`), so it must not import
torch: ``attnlab --help`` and the listing commands stay fast. :mod:`probes.distributed`
re-exports it.
"""

from __future__ import annotations

import os

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun / torch.distributed.run (its env vars)."""
    return all(v in os.environ for v in TORCHRUN_VARS)
