"""Peak memory of `clasp data inspect` (jobs/inspect_data.py) on the largest legal samples and on memory bombs.

  ./dev bench/inspect_memory.py [--bomb-gb 4] [--record | --out PATH]   # --record: bench/results/inspect_memory.json

Each case is a fresh dataset root (I3D dims: 2048-d visual, 128-d audio, 25 fps / stride 8 /
window 24) inspected by `clasp data inspect` in its own process; the figure is that process's
peak resident memory (ru_maxrss), next to a baseline root of one 10 s video. Cases:

* ``unav100_longest``: a 60 s video (UnAV-100's longest), legal;
* ``largest_legal``: a video whose visual .npy is just under the default bound (data.max_member_mb = 64),
  legal;
* ``gzip_bomb``: a gzip-compressed shard whose .npy expands to ``--bomb-gb`` GB;
* ``sparse_bomb``: a GNU-sparse member of a few KB that expands to ``--bomb-gb`` GB;
* ``npy_header_bomb``: a small .npy whose header announces ``--bomb-gb`` GB of steps.

The bombs must be refused (exit 1, named in the report) at about the baseline's memory.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.data.format import VideoSample, encode_sample  # noqa: E402
from clasp_dist.data.grid import I3D_GRID  # noqa: E402
from clasp_dist.data.writer import write_dataset  # noqa: E402
from tests.data.hostile import gnu_sparse_member  # noqa: E402

DV, DA = 2048, 128


def _sample(vid: str, duration: float) -> VideoSample:
    steps = I3D_GRID.num_steps(duration)
    rng = np.random.default_rng(0)
    return VideoSample(
        vid,
        rng.standard_normal((steps, DV), np.float32).astype(np.float16),
        rng.standard_normal((steps, DA), np.float32).astype(np.float16),
        duration,
        [0],
        [(0.5, 1.5, 0)],
    )


def legal_root(root: Path, duration: float) -> Path:
    write_dataset(
        str(root),
        dataset="bench",
        classes=["a", "b"],
        visual_dim=DV,
        audio_dim=DA,
        grid=I3D_GRID,
        split_items={"validation": [_sample("v0", duration)]},
        make_sample=lambda s: s,
        progress=False,
    )
    return root


def _rewrite_shard(root: Path, data: bytes) -> Path:
    """Replace the single validation shard's bytes (and its checksum) with ``data``."""
    import hashlib

    manifest = json.loads((root / "manifest.json").read_text())
    shard = manifest["splits"]["validation"]["shards"][0]
    (root / shard["path"]).write_bytes(data)
    shard["sha256"] = hashlib.sha256(data).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _members(duration: float, visual: bytes | None) -> list[tuple[str, bytes]]:
    members = encode_sample(_sample("v0", duration), I3D_GRID, include_segments=True)
    return [(n, visual if n.endswith("visual.npy") and visual is not None else d) for n, d in members]


def _tar(members: list[tuple[str, bytes]], fileobj) -> None:
    """A complete tar of (name, data) members."""
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _bomb_steps(gb: float) -> int:
    return int(gb * 2**30 / (DV * 2))


def npy_header(steps: int) -> bytes:
    """A float16 ``[steps, 2048]`` .npy header (what precedes the data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f2", "fortran_order": False, "shape": (steps, DV)})
    return buf.getvalue()


def _without_visual(duration: float) -> bytes:
    """Tar bytes of a sample's audio and meta members, without the end-of-archive blocks."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w")
    for name, data in _members(duration, None):
        if not name.endswith("visual.npy"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()[: tar.offset]


END = b"\0" * (2 * tarfile.BLOCKSIZE)


def gzip_bomb(root: Path, gb: float) -> Path:
    """A .npy of ``gb`` GB of zeros inside a gzip-compressed tar (streamed: never held in memory here)."""
    legal_root(root, 10.0)
    header, steps = npy_header(_bomb_steps(gb)), _bomb_steps(gb)
    size = len(header) + steps * DV * 2
    gz_path = root / "bomb.tar.gz.tmp"
    with open(gz_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz:
        info = tarfile.TarInfo("v0.visual.npy")
        info.size = size
        gz.write(info.tobuf(format=tarfile.PAX_FORMAT) + header)
        zeros, left = bytes(64 << 20), size - len(header)
        while left > 0:
            gz.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))
        gz.write(b"\0" * (-size % tarfile.BLOCKSIZE) + _without_visual(10.0) + END)
    data = gz_path.read_bytes()
    gz_path.unlink()
    return _rewrite_shard(root, data)


def sparse_bomb(root: Path, gb: float) -> Path:
    """A GNU sparse member storing only the .npy header; the ``gb`` GB after it are holes."""
    legal_root(root, 10.0)
    header = npy_header(_bomb_steps(gb))
    sparse = gnu_sparse_member("v0.visual.npy", header, len(header) + _bomb_steps(gb) * DV * 2)
    return _rewrite_shard(root, sparse + _without_visual(10.0) + END)


def npy_header_bomb(root: Path, gb: float) -> Path:
    """A plain member holding only a .npy header that announces ``gb`` GB of steps."""
    legal_root(root, 10.0)
    buf = io.BytesIO()
    _tar(_members(10.0, npy_header(_bomb_steps(gb))), buf)
    return _rewrite_shard(root, buf.getvalue())


_CHILD = """import runpy, sys
sys.argv = [sys.argv[1], sys.argv[2]]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
status = open("/proc/self/status").read()
print("VmHWM_kB", status.split("VmHWM:")[1].split()[0], file=sys.stderr)
sys.exit(code)
"""


def measure(root: Path) -> dict:
    """Run inspect_data on ``root`` in a fresh process; its exit code, peak RSS and time. The peak is the
    child's own VmHWM (a fork's ru_maxrss would include this bench process's memory)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(REPO / "jobs" / "inspect_data.py"), f"data.root={root}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    peak_kb = int(proc.stderr.split("VmHWM_kB ")[1].split()[0])
    report = next((ln.strip() for ln in proc.stdout.splitlines() if "bad sample" in ln), "")
    return {
        "exit": proc.returncode,
        "peak_rss_mib": round(peak_kb / 1024, 1),
        "wall_s": round(time.perf_counter() - started, 2),
        "shard_bytes": sum(p.stat().st_size for p in root.glob("*.tar")),
        "report": report[:300],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap)
    ap.add_argument("--bomb-gb", type=float, default=4.0, help="what each bomb expands to (GB)")
    args = ap.parse_args()
    cases = {
        "baseline_10s": lambda r: legal_root(r, 10.0),
        "unav100_longest": lambda r: legal_root(r, 60.0),
        "largest_legal": lambda r: legal_root(r, 0.32 * (64 * 2**20 // (DV * 2) - 16)),
        "gzip_bomb": lambda r: gzip_bomb(r, args.bomb_gb),
        "sparse_bomb": lambda r: sparse_bomb(r, args.bomb_gb),
        "npy_header_bomb": lambda r: npy_header_bomb(r, args.bomb_gb),
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="clasp-inspect-mem-") as tmp:
        for name, build in cases.items():
            root = build(Path(tmp) / name)
            results[name] = measure(root)
            print(
                f"{name:>16}: exit {results[name]['exit']}, peak RSS {results[name]['peak_rss_mib']:7.1f} MiB, "
                f"{results[name]['wall_s']:5.2f} s, shard {results[name]['shard_bytes'] / 2**20:8.2f} MiB  "
                f"{results[name]['report'][:110]}"
            )
    out = {
        "bomb_expands_to_gb": args.bomb_gb,
        "bounds": {"max_member_mb": 64, "meta_json_max_bytes": 2**20, "step_count_tolerance": "max(8, 10% of steps)"},
        "cases": results,
    }
    path = output_path(args, "inspect_memory.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
