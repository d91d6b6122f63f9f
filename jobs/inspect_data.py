"""Validate a shard dataset and print a summary table; exit status 1 on any problem.

  inspect_data.py ROOT [--no-verify-checksums] [--endpoint-url URL]

Checks the manifest (format, version, dims, counts), every shard's sha256 (unless
--no-verify-checksums), every sample (members, JSON, dims, NaN/Inf, label/segment ranges, stream
lengths), counts per split and the weak-supervision rule (train shards carry no segments).
"""
from __future__ import annotations

import argparse
import sys

from clasp_dist.config import StorageConfig
from clasp_dist.data import DataError
from clasp_dist.data.inspection import inspect_dataset


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="dataset root: local path or s3://bucket/prefix")
    ap.add_argument("--verify-checksums", action=argparse.BooleanOptionalAction, default=True,
                    help="check every shard's sha256 against the manifest (default: on)")
    ap.add_argument("--endpoint-url", default=None)
    ap.add_argument("--region", default=None)
    ap.add_argument("--length-tolerance", type=int, default=1)
    args = ap.parse_args(argv)
    storage = StorageConfig(endpoint_url=args.endpoint_url, region=args.region)
    try:
        report = inspect_dataset(args.root, storage, verify=args.verify_checksums,
                                 length_tolerance=args.length_tolerance)
    except DataError as exc:  # storage unreachable, refused credentials
        print(f"inspect_data: error: {exc}", file=sys.stderr)
        return 1
    if report.manifest is None:
        print(f"inspect_data: error: {report.problems[0]}", file=sys.stderr)
        return 1
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
