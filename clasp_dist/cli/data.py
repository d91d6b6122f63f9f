"""`clasp data prepare|index|inspect`: build a shard dataset, index one, check one.

The dataset root is `data.root=ROOT` in all three, object storage is reached with the `storage.*` keys (or the
standard AWS_* / Google environment), and the reading bounds are the `data.*` keys training uses."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .common import EXIT_OK, EXIT_PROBLEMS, MAX_ERROR_CHARS, add_overrides, load_cfg, require_data_root

SUMMARY = "build (prepare), index or check (inspect) a shard dataset at data.root=ROOT"
SECTIONS = ("data", "storage")
"""The config sections the data subcommands read (their --help lists these keys only)."""

STORAGE_NOTE = """S3 roots use storage.endpoint_url / storage.region or the standard AWS_* environment (AWS_ENDPOINT_URL,
credentials). gs:// roots use Google's Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's
application-default login, the node's service account); storage.gcs_endpoint_url (or STORAGE_EMULATOR_HOST)
points at a GCS-compatible server, storage.anon=true sends no credentials (public buckets, emulators)."""

PREPARE_DESCRIPTION = f"""Build a shard dataset (docs/data.md) at data.root=ROOT (a local path, s3:// or gs://).

  synth    semi-synthetic UnAV-100 features for the real annotations: data.synth_profile, data.synth_seed,
           data.synth_limit_per_split, data.synth_distractor_rate (config=tiny picks the tiny profile)
  unav100  the official UnAV-100 feature release (--annotations, --features, --feature-set)
  anet13   ActivityNet 1.3 features (--annotations, --features, --fps, --feat-stride, --window)

unav100/anet13 feature files (a local folder, s3:// or gs://) named otherwise than the release's:
--prefix P before the video id, --visual-suffix S / --audio-suffix S per stream (repeat one to concatenate
several files), or --combined-suffix S --split-dim DV for one file per video holding visual then audio;
--classes FILE gives an explicit class list (JSON list or one name per line).

{STORAGE_NOTE}"""

PREPARE_EXAMPLES = """examples:
  clasp data prepare synth data.root=data/tiny config=tiny
  clasp data prepare synth data.root=s3://bucket/small data.synth_profile=small storage.endpoint_url=http://127.0.0.1:9000
  clasp data prepare unav100 data.root=s3://bucket/unav100_i3d --annotations unav100.json \\
      --features features/ --feature-set i3d
  clasp data prepare anet13 data.root=data/anet --annotations anet.json --features s3://bucket/feats/ \\
      --fps 15 --feat-stride 16 --window 16 --prefix v_ --combined-suffix .npy --split-dim 2048"""

INSPECT_DESCRIPTION = f"""Validate a shard dataset at data.root=ROOT and print a summary table.

Checks the manifest (format, version, dims, counts, shard paths), every shard's sha256 (unless
--no-verify-checksums), every sample (members, JSON, every meta.json field, dims, NaN/Inf, label/segment
ranges, step count vs duration, stream lengths (data.length_mismatch_tolerance), safe ids), counts per split
and the weak-supervision rule (train shards carry no segments). Hostile shards are refused before they grow:
compressed shards, sparse or non-regular members, and members over data.max_member_mb are never expanded or
read.

Exit status: 0 the dataset has no problem; {EXIT_PROBLEMS} problems found in the dataset (the table lists them and the
first is the 'error: ' line on stderr; only that line when the manifest cannot be read); 2 bad input (the command could not look: a bad key, storage
unreachable or refusing the credentials).

{STORAGE_NOTE}"""

INDEX_DESCRIPTION = f"""Write manifest.json for WebDataset tar shards already at data.root=ROOT, so training reads them.

Reads every .tar under ROOT (each sample through the training reader's decoder, bounded by data.max_member_mb)
and writes ROOT/manifest.json. A tar's split is the one its file name says (train/training, val/validation,
test/testing) unless --split NAME=GLOB patterns (relative to ROOT) assign them. Members other than visual.npy,
audio.npy and meta.json are skipped unread and counted; data.strict_members=true makes such a sample an error.
An existing manifest.json is kept (error) unless --overwrite.

{STORAGE_NOTE}"""

INDEX_EXAMPLES = """examples:
  clasp data index data.root=data/my-tars
  clasp data index data.root=s3://bucket/my-tars --classes classes.txt \\
      --split train='tars/train-*' --split test='tars/eval-*' data.strict_members=true"""


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("data", help=SUMMARY, description=SUMMARY)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    add_prepare(actions)
    add_index(actions)
    add_inspect(actions)
    return parser


def add_prepare(actions) -> None:
    prepare = actions.add_parser(
        "prepare", help="build a shard dataset (synth, unav100, anet13)", description=PREPARE_DESCRIPTION
    )
    kinds = prepare.add_subparsers(dest="kind", metavar="SOURCE", required=True)
    synth = kinds.add_parser(
        "synth",
        help="semi-synthetic UnAV-100 features for the real annotations",
        description=PREPARE_DESCRIPTION,
        epilog=PREPARE_EXAMPLES,
        config_sections=SECTIONS,
    )
    synth.add_argument("--annotations", default=None, help="annotation JSON (default: the packaged UnAV-100 copy)")
    sources = [synth]
    for name, help_ in (("unav100", "official UnAV-100 feature release"), ("anet13", "ActivityNet 1.3 features")):
        conv = kinds.add_parser(
            name, help=help_, description=PREPARE_DESCRIPTION, epilog=PREPARE_EXAMPLES, config_sections=SECTIONS
        )
        conv.add_argument("--annotations", required=True, help="annotation JSON")
        conv.add_argument("--features", required=True, help="folder of per-video .npy files")
        conv.add_argument("--allow-missing", action="store_true", help="leave out annotated videos without features")
        conv.add_argument(
            "--limit-per-split", type=int, default=None, help="at most N videos per split (first N by id)"
        )
        add_layout_options(conv)
        if name == "unav100":
            conv.add_argument("--feature-set", choices=("i3d", "onepeace"), required=True)
        else:
            conv.add_argument("--fps", type=float, required=True)
            conv.add_argument("--feat-stride", type=int, required=True)
            conv.add_argument("--window", type=int, required=True)
        sources.append(conv)
    for kind in sources:
        add_overrides(kind, "data.root=ROOT")
        kind.add_argument(
            "--workers", type=int, default=os.cpu_count() or 1, help="writer processes (default: all CPUs)"
        )
        kind.add_argument("--shard-size", type=int, default=None, help="videos per shard (default: profile / 256)")
        kind.add_argument("--quiet", action="store_true", help="no progress bar")
        kind.set_defaults(run=run_prepare)


def add_layout_options(conv: argparse.ArgumentParser) -> None:
    """The options naming a converter's feature files otherwise than the release does, and its class list."""
    conv.add_argument("--classes", default=None, help="explicit class list file (JSON list or one name per line)")
    conv.add_argument("--prefix", default=None, help="file-name prefix before the video id (e.g. v_)")
    conv.add_argument(
        "--visual-suffix", action="append", default=[], help="visual file suffix (repeat: files concatenated)"
    )
    conv.add_argument(
        "--audio-suffix", action="append", default=[], help="audio file suffix (repeat: files concatenated)"
    )
    conv.add_argument(
        "--combined-suffix", default=None, help="one file per video holding visual then audio (e.g. .npy)"
    )
    conv.add_argument("--split-dim", type=int, default=None, help="visual width of a --combined-suffix file")


def add_index(actions) -> None:
    index = actions.add_parser(
        "index",
        help="write the manifest of existing WebDataset tar shards",
        description=INDEX_DESCRIPTION,
        epilog=INDEX_EXAMPLES,
        config_sections=SECTIONS,
    )
    add_overrides(index, "data.root=ROOT")
    index.add_argument(
        "--classes", default=None, help="class list file: JSON list or one name per line (default: label ids)"
    )
    index.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="NAME=GLOB",
        help="tars (paths relative to ROOT) of a split; repeatable (default: the split each file name says)",
    )
    index.add_argument("--dataset", default=None, help="dataset name in the manifest (default: the folder's name)")
    index.add_argument("--overwrite", action="store_true", help="replace an existing manifest.json")
    index.set_defaults(run=run_index)


def add_inspect(actions) -> None:
    inspect = actions.add_parser(
        "inspect",
        help="validate a shard dataset, print a summary (exit 1 on any problem)",
        description=INSPECT_DESCRIPTION,
        epilog="example:\n  clasp data inspect data.root=s3://bucket/unav100_i3d storage.region=eu-west-1",
        config_sections=SECTIONS,
    )
    add_overrides(inspect, "data.root=ROOT")
    inspect.add_argument(
        "--verify-checksums",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check every shard's sha256 against the manifest (default: on)",
    )
    inspect.set_defaults(run=run_inspect)


def run_prepare(args: argparse.Namespace) -> int:
    from ..data import read_manifest

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(args.overrides)
    root = require_data_root(cfg)
    start = time.perf_counter()
    write_dataset(args, cfg, root)
    manifest = read_manifest(root, cfg.storage)
    counts = ", ".join(f"{name} {s.videos} videos / {len(s.shards)} shards" for name, s in manifest.splits.items())
    print(
        f"wrote {manifest.dataset} to {root} in {time.perf_counter() - start:.1f} s: {counts}; "
        f"writer counts {manifest.extra.get('writer_counts')}"
    )
    return EXIT_OK


def write_dataset(args: argparse.Namespace, cfg, root: str) -> None:
    from ..data.convert import FEATURE_SETS, convert_features, custom_layout
    from ..data.grid import Grid
    from ..data.index import read_class_list
    from ..data.synthetic import generate_dataset

    progress = not args.quiet
    if args.kind == "synth":
        generate_dataset(
            root,
            cfg.data.synth_profile,
            seed=cfg.data.synth_seed,
            limit_per_split=cfg.data.synth_limit_per_split,
            distractor_rate=cfg.data.synth_distractor_rate,
            storage_cfg=cfg.storage,
            annotations=args.annotations,
            workers=args.workers,
            shard_size=args.shard_size,
            progress=progress,
        )
        return
    if args.kind == "unav100":
        feature_set, grid, dataset = args.feature_set, None, f"unav100-{args.feature_set}"
    else:
        feature_set, grid, dataset = "anet", Grid(args.fps, args.feat_stride, args.window), "anet13"
    layout = custom_layout(
        FEATURE_SETS[feature_set],
        prefix=args.prefix,
        visual_suffixes=args.visual_suffix,
        audio_suffixes=args.audio_suffix,
        combined_suffix=args.combined_suffix,
        split_dim=args.split_dim,
    )
    convert_features(
        args.annotations,
        args.features,
        root,
        feature_set,
        dataset=dataset,
        grid=grid,
        storage_cfg=cfg.storage,
        workers=args.workers,
        shard_size=args.shard_size or 256,
        limit_per_split=args.limit_per_split,
        allow_missing=args.allow_missing,
        length_tolerance=cfg.data.length_mismatch_tolerance,
        progress=progress,
        layout=layout,
        classes=read_class_list(args.classes, cfg.storage) if args.classes else None,
    )


def run_index(args: argparse.Namespace) -> int:
    from ..data.index import index_dataset, parse_split_patterns, read_class_list

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_cfg(args.overrides)
    report = index_dataset(
        require_data_root(cfg),
        storage_cfg=cfg.storage,
        data_cfg=cfg.data,
        classes=read_class_list(args.classes, cfg.storage) if args.classes else None,
        split_patterns=parse_split_patterns(args.split) if args.split else None,
        dataset=args.dataset,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    from ..data.inspection import inspect_dataset

    cfg = load_cfg(args.overrides)
    report = inspect_dataset(
        require_data_root(cfg),
        cfg.storage,
        verify=args.verify_checksums,
        length_tolerance=cfg.data.length_mismatch_tolerance,
        data_cfg=cfg.data,
    )
    if report.manifest is None:  # nothing to tabulate: the manifest itself is the problem
        print(f"error: {report.problems[0]}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(report.table())
    problems = report.all_problems()
    if problems:  # the table lists them all; the first also as the one `error: ` line scripts read
        more = f" (and {len(problems) - 1} more above)" if len(problems) > 1 else ""
        print(f"error: {problems[0][:MAX_ERROR_CHARS]}{more}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_PROBLEMS
