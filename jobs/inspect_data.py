"""Validate a shard dataset and print a summary table; exit status 1 on any problem.

  inspect_data.py ROOT [--no-verify-checksums] [--endpoint-url URL]

Checks the manifest (format, version, dims, counts, shard paths), every shard's sha256 (unless
--no-verify-checksums), every sample (members, JSON, every meta.json field, dims, NaN/Inf, label/segment
ranges, step count vs duration, stream lengths, safe ids), counts per split and the weak-supervision rule
(train shards carry no segments). Hostile shards are refused before they grow: compressed shards, sparse
or non-regular members, and members over --max-member-mb are never expanded or read.
"""

from __future__ import annotations

import argparse
import sys

from clasp_dist.config import DataConfig, StorageConfig
from clasp_dist.data import DataError
from clasp_dist.data.inspection import inspect_dataset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="dataset root: local path or s3://bucket/prefix")
    ap.add_argument(
        "--verify-checksums",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check every shard's sha256 against the manifest (default: on)",
    )
    ap.add_argument("--endpoint-url", default=None)
    ap.add_argument("--region", default=None)
    ap.add_argument("--length-tolerance", type=int, default=1)
    ap.add_argument(
        "--max-member-mb",
        type=float,
        default=DataConfig.max_member_mb,
        help="bound on one .npy member, checked from the tar header before reading it (data.max_member_mb)",
    )
    args = ap.parse_args(argv)
    storage = StorageConfig(endpoint_url=args.endpoint_url, region=args.region)
    try:
        report = inspect_dataset(
            args.root,
            storage,
            verify=args.verify_checksums,
            length_tolerance=args.length_tolerance,
            data_cfg=DataConfig(max_member_mb=args.max_member_mb),
        )
    except DataError as exc:  # storage unreachable, refused credentials
        print(f"inspect_data: error: {exc}", file=sys.stderr)
        return 1
    if report.manifest is None:
        print(f"inspect_data: error: {report.problems[0]}", file=sys.stderr)
        return 1
    print(report.table())
    problems = report.all_problems()
    if problems:
        more = f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""
        print(f"inspect_data: error: {problems[0][:1000]}{more}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
