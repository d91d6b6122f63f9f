"""Data-plane throughput: videos/s and MB/s from shards into padded batches through Ray Data.

    ./dev bench/data_throughput.py [--videos 1000] [--profile i3d] [--batch-size 16] [--passes 2]

Three sources, the same consumer (``iter_train_batches`` -> ``PaddingCollate`` -> ``Batch``):
(a) local shards, (b) the same shards on a loopback moto S3 server that this script starts in a subprocess
(read through pyarrow's native S3 client), (c) the rows already in memory (``ray.data.from_items``): the
ceiling without storage or tar decoding. (a) and (b) go through ``read_split``: the project's own bounded tar
datasource (``clasp_dist/data/split_reader.py``), the reader training uses. The i3d profile is limited to ``--videos``
train videos (default 1,000 of 6,489) so that a run takes a few minutes. MB/s counts the shard bytes.
Writes ``bench/results/local/data_throughput.json`` (``--record``: the tracked ``bench/results/`` one). For the
full-profile generation timing see ``bench/generate_full.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.data import generate_dataset, read_manifest  # noqa: E402
from clasp_dist.data.batch import iter_train_batches  # noqa: E402
from clasp_dist.data.split_reader import iter_local_samples, read_split  # noqa: E402

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[str, subprocess.Popen]:
    """moto's S3 server in its own process (in this one it would compete with the consumer for the GIL)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    return endpoint, proc


def upload(local_root: str, bucket: str, endpoint: str) -> str:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=bucket)
    for path in sorted(Path(local_root).iterdir()):
        client.upload_file(str(path), bucket, f"ds/{path.name}")
    return f"s3://{bucket}/ds"


def consume(dataset, num_classes: int, batch_size: int) -> tuple[int, float]:
    start, videos = time.perf_counter(), 0
    for batch in iter_train_batches(dataset, batch_size=batch_size, num_classes=num_classes):
        videos += len(batch)
    return videos, time.perf_counter() - start


def measure(name: str, make_dataset, num_classes: int, batch_size: int, passes: int, shard_bytes: int) -> dict:
    runs = []
    for _ in range(passes):
        videos, seconds = consume(make_dataset(), num_classes, batch_size)
        runs.append(seconds)
    best = min(runs)
    return {
        "source": name,
        "videos": videos,
        "seconds_per_pass": [round(r, 2) for r in runs],
        "videos_per_s": round(videos / best, 1),
        "MB_per_s": round(shard_bytes / 1e6 / best, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="i3d")
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    add_output_args(ap)
    args = ap.parse_args()

    import ray

    endpoint, moto = start_moto()  # before ray.init: read tasks inherit the endpoint and credentials
    work = tempfile.mkdtemp(prefix="clasp-bench-")
    local = generate_dataset(
        f"{work}/ds",
        args.profile,
        limit_per_split={"train": args.videos, "validation": 0, "test": 0},
        shard_size=args.shard_size,
        workers=args.num_cpus,
        progress=False,
    )
    manifest = read_manifest(local)
    shard_bytes = sum((Path(local) / s.path).stat().st_size for s in manifest.splits["train"].shards)
    s3_root = upload(local, "bench", endpoint)
    ray.init(
        num_cpus=args.num_cpus,
        object_store_memory=1024**3,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    rows = list(iter_local_samples(local, "train"))
    C = manifest.num_classes
    results = [
        measure("local shards", lambda: read_split(local, "train"), C, args.batch_size, args.passes, shard_bytes),
        measure(
            "S3 (loopback moto)", lambda: read_split(s3_root, "train"), C, args.batch_size, args.passes, shard_bytes
        ),
        measure(
            "in-memory (from_items)", lambda: ray.data.from_items(rows), C, args.batch_size, args.passes, shard_bytes
        ),
    ]
    ray.shutdown()
    moto.terminate()
    shutil.rmtree(work, ignore_errors=True)
    local_rate = results[0]["videos_per_s"]
    for r in results:
        r["vs_local"] = round(r["videos_per_s"] / local_rate, 2)
    print(
        f"{args.profile} profile, {manifest.splits['train'].videos} train videos, "
        f"{len(manifest.splits['train'].shards)} shards, {shard_bytes / 1e6:.0f} MB, batch {args.batch_size}, "
        f"{args.num_cpus} CPUs, best of {args.passes} passes"
    )
    print(f"{'source':<24} {'videos/s':>9} {'MB/s':>8} {'vs local':>9}")
    for r in results:
        print(f"{r['source']:<24} {r['videos_per_s']:>9} {r['MB_per_s']:>8} {r['vs_local']:>9}")
    out = {
        "profile": args.profile,
        "videos": manifest.splits["train"].videos,
        "shard_bytes": shard_bytes,
        "shards": len(manifest.splits["train"].shards),
        "batch_size": args.batch_size,
        "cpus": args.num_cpus,
        "machine": platform.platform(),
        "results": results,
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "note": "2-core machine shared with other jobs: compare figures only at similar load",
    }
    dest = output_path(args, "data_throughput.json")
    dest.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
