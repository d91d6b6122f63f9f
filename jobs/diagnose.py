#!/usr/bin/env python
"""Measure what each CLASP module does on a trained model's outputs: `clasp diagnose` for `python jobs/diagnose.py ...` (e.g. under `ray job submit`); see `clasp diagnose --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["diagnose", *sys.argv[1:]]))
