"""`python -m clasp_dist.cli ...` = `clasp ...`."""

import sys

from .app import main

sys.exit(main())
