"""``python -m edge_runtime``: see ``edge_runtime.cli``."""

import sys

from edge_runtime.cli import main

sys.exit(main())
