"""`python -m clasp_dist.cli ...` = `clasp ...`."""

import sys

from .main import main

sys.exit(main())
