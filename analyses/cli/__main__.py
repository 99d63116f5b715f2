"""``python -m analyses.cli`` is the same as ``attnlab``."""

import sys

from analyses.cli.main import main

sys.exit(main())
