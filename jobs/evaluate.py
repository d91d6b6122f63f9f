#!/usr/bin/env python
"""Segment mAP of a results JSON or of a checkpoint: `clasp evaluate` for `python jobs/evaluate.py ...` (e.g. under `ray job submit`); see `clasp evaluate --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
