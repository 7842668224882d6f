"""``python -m reports``: see ``reports.build``."""

import sys

from reports.build import main

sys.exit(main())
