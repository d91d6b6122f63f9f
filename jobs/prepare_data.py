#!/usr/bin/env python
"""Build a shard dataset: `clasp data prepare` for `python jobs/prepare_data.py ...` (e.g. under `ray job submit`); see `clasp data prepare --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "prepare", *sys.argv[1:]]))
