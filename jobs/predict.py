#!/usr/bin/env python
"""Predict segments for a split with a checkpoint: `clasp predict` for `python jobs/predict.py ...` (e.g. under `ray job submit`); see `clasp predict --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
