"""Build a shard dataset (SPEC 2.2) under a local path, s3:// or gs:// root.

  prepare_data.py synth   --out ROOT [--profile tiny|small|i3d|onepeace] [--annotations JSON]
                          [--limit-per-split N] [--seed S] [--distractor-rate P] [--workers N]
  prepare_data.py unav100 --annotations JSON --features DIR --feature-set i3d|onepeace --out ROOT
  prepare_data.py anet13  --annotations JSON --features DIR --fps F --feat-stride S --window W --out ROOT

S3 roots use --endpoint-url/--region or the standard AWS_* environment (AWS_ENDPOINT_URL, credentials).
gs:// roots use Google's Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
application-default login, the node's service account); --gcs-endpoint-url (or STORAGE_EMULATOR_HOST)
points at a GCS-compatible server, --anon sends no credentials (public buckets, emulators).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from clasp_dist.config import StorageConfig
from clasp_dist.data import DataError, read_manifest
from clasp_dist.data.convert import convert_features
from clasp_dist.data.grid import Grid
from clasp_dist.data.synthetic import PROFILES, generate_dataset


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset root: a local path, s3://bucket/prefix or gs://bucket/prefix")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="writer processes (default: all CPUs)")
    p.add_argument("--shard-size", type=int, default=None, help="videos per shard (default: profile / 256)")
    p.add_argument("--limit-per-split", type=int, default=None, help="at most N videos per split (first N by id)")
    p.add_argument("--endpoint-url", default=None, help="S3-compatible endpoint (default: AWS_ENDPOINT_URL)")
    p.add_argument("--region", default=None, help="S3 bucket region (default: AWS_REGION, else asked from the bucket)")
    p.add_argument("--gcs-endpoint-url", default=None, help="GCS-compatible endpoint (default: STORAGE_EMULATOR_HOST)")
    p.add_argument("--anon", action="store_true", help="no credentials (public buckets, local emulators)")
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="semi-synthetic UnAV-100 features for the real annotations (SPEC 2.3)")
    _common(synth)
    synth.add_argument("--profile", choices=sorted(PROFILES), default="small")
    synth.add_argument("--annotations", default=None, help="annotation JSON (default: the packaged UnAV-100 copy)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--distractor-rate", type=float, default=None, help="modality-only distractors per event")
    for name, help_ in (("unav100", "official UnAV-100 feature release"), ("anet13", "ActivityNet 1.3 features")):
        conv = sub.add_parser(name, help=help_)
        _common(conv)
        conv.add_argument("--annotations", required=True)
        conv.add_argument("--features", required=True, help="folder of per-video .npy files")
        conv.add_argument("--allow-missing", action="store_true", help="leave out annotated videos without features")
        conv.add_argument("--length-tolerance", type=int, default=1, help="steps truncated (and counted); more = error")
        if name == "unav100":
            conv.add_argument("--feature-set", choices=("i3d", "onepeace"), required=True)
        else:
            conv.add_argument("--fps", type=float, required=True)
            conv.add_argument("--feat-stride", type=int, required=True)
            conv.add_argument("--window", type=int, required=True)
    return ap.parse_args(argv)


def storage_config(args: argparse.Namespace) -> StorageConfig:
    return StorageConfig(
        endpoint_url=args.endpoint_url,
        region=args.region,
        retries=args.retries,
        gcs_endpoint_url=args.gcs_endpoint_url,
        anon=args.anon,
    )


def run(args: argparse.Namespace) -> str:
    storage = storage_config(args)
    progress = not args.quiet
    if args.command == "synth":
        return generate_dataset(
            args.out,
            args.profile,
            seed=args.seed,
            limit_per_split=args.limit_per_split,
            distractor_rate=args.distractor_rate,
            storage_cfg=storage,
            annotations=args.annotations,
            workers=args.workers,
            shard_size=args.shard_size,
            progress=progress,
        )
    if args.command == "unav100":
        feature_set, grid, dataset = args.feature_set, None, f"unav100-{args.feature_set}"
    else:
        feature_set, grid, dataset = "anet", Grid(args.fps, args.feat_stride, args.window), "anet13"
    convert_features(
        args.annotations,
        args.features,
        args.out,
        feature_set,
        dataset=dataset,
        grid=grid,
        storage_cfg=storage,
        workers=args.workers,
        shard_size=args.shard_size or 256,
        limit_per_split=args.limit_per_split,
        allow_missing=args.allow_missing,
        length_tolerance=args.length_tolerance,
        progress=progress,
    )
    return args.out


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        root = run(args)
        manifest = read_manifest(root, storage_config(args))
    except DataError as exc:
        print(f"prepare_data: error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{name} {s.videos} videos / {len(s.shards)} shards" for name, s in manifest.splits.items())
    print(
        f"wrote {manifest.dataset} to {root} in {time.perf_counter() - start:.1f} s: {counts}; "
        f"writer counts {manifest.extra.get('writer_counts')}"
    )
    return 0


if __name__ == "__main__":
    from clasp_dist.input_errors import report_bad_input

    sys.exit(report_bad_input(main))
