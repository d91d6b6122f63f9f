#!/usr/bin/env python
"""Train CLASP (Ray Train + DeepSpeed), report test mAP: `clasp train` for `python jobs/train.py ...` (e.g. under `ray job submit`); see `clasp train --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
