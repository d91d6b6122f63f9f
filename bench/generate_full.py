"""Time the generation of a full semi-synthetic profile (default: i3d, all 10,790 videos) and its size.

    ./dev bench/generate_full.py [--profile i3d] [--workers 2] [--data-out /tmp/clasp-full-i3d] [--keep] [--record]

Writes ``bench/results/local/data_generate_<profile>.json`` (``--record``: the tracked bench/results/ one);
deletes the dataset afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

from bench.outputs import add_output_args, output_path
from clasp_dist.data import generate_dataset, read_manifest


def dir_size(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="i3d")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--data-out", default=None, help="where the dataset is generated (default /tmp/clasp-full-<profile>)"
    )
    add_output_args(ap)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    out = args.data_out or f"/tmp/clasp-full-{args.profile}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    generate_dataset(out, args.profile, seed=0, workers=args.workers)
    seconds = time.perf_counter() - start
    manifest = read_manifest(out)
    videos = sum(s.videos for s in manifest.splits.values())
    size = dir_size(out)
    result = {
        "profile": args.profile,
        "videos": videos,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 1),
        "videos_per_s": round(videos / seconds, 1),
        "bytes_on_disk": size,
        "gib_on_disk": round(size / 2**30, 2),
        "machine": platform.platform(),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "note": "2-core machine shared with other jobs: compare figures only at similar load",
    }
    print(json.dumps(result, indent=1))
    dest = output_path(args, f"data_generate_{args.profile}.json")
    dest.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
