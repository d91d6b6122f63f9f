"""Where a bench writes its JSON: `bench/results/local/` (gitignored) by default, so that running a bench
never changes the tracked figures; `--record` writes the tracked `bench/results/<name>` on purpose, and
`--out PATH` anywhere else."""

from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
"""The tracked figures (docs/benchmarks.md quotes them)."""
LOCAL = RESULTS / "local"
"""Untracked output of everyday bench runs."""


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"update the tracked figure in {RESULTS.relative_to(RESULTS.parents[1])}/ (default: "
        f"write to {LOCAL.relative_to(RESULTS.parents[1])}/, untracked)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here instead")


def output_path(args: argparse.Namespace, name: str) -> Path:
    """`--out`, else the tracked `results/<name>` with `--record`, else the untracked `results/local/<name>`."""
    path = args.out if args.out is not None else (RESULTS if args.record else LOCAL) / name
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
