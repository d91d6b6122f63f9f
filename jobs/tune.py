#!/usr/bin/env python
"""Ray Tune sweeps over CLASP (ablation arms, hyper-parameter search): `clasp tune` for `python jobs/tune.py ...` (e.g. under `ray job submit`); see `clasp tune --help`."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from clasp_dist.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
