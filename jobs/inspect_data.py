#!/usr/bin/env python
"""Validate a shard dataset (exit 1 on any problem): `clasp data inspect` for `python jobs/inspect_data.py ...` (e.g. under `ray job submit`); see `clasp data inspect --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["data", "inspect", *sys.argv[1:]]))
