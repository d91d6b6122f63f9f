"""Prepare `.whl/`: the Python packages that `bench/gpu_step.py` needs on the lent GPU machine and that its image lacks.

    ./dev bench/device_wheels.py            # about 55 MiB into .whl/ (gitignored), once per checkout

The lent machine (docs/benchmarks.md, "First GPU figures") has Python 3.12 with CUDA PyTorch, numpy, pandas,
pyarrow, fsspec, pyyaml, aiohttp, grpcio, ... but not Ray, DeepSpeed or pydantic, and it cannot reach any
package index. So the wheels travel with the call (`carry: [".whl"]`), under its 64 MiB limit on what travels:
  - the packages below, at the versions installed in .venv (the pins of requirements/), as cp312 x86-64 wheels;
  - Ray's wheel (79 MB) without its Java jar (`ray/jars/`, 31 MB; no Java workers here) and the dashboard's
    source maps: the rest of Ray is unchanged, and its RECORD lists exactly the files kept;
  - DeepSpeed as the wheel pip built from its sdist (pure Python; its ops are JIT-compiled, and the training
    loop needs none: it passes a torch AdamW).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:"] + [
    arg
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
    for arg in ("--platform", tag)
]
MISSING_THERE = [
    "hjson",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",  # DeepSpeed, our config, Ray
    "jsonschema",
    "jsonschema-specifications",
    "referencing",
    "rpds-py",
    "tensorboardX",  # Ray core, Train, Tune
    # Ray's `default` extra, the dashboard: Ray Train V2 polls its State API every second and warns without it.
    # (virtualenv and py-spy, also in that extra, serve runtime_env pip and stack dumps: not needed, left out.)
    "aiohttp-cors",
    "colorful",
    "smart-open",
    "opencensus",
    "opencensus-context",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-proto",
    "opentelemetry-exporter-prometheus",
    "opentelemetry-semantic-conventions",
    "google-api-core",
    "google-auth",
    "googleapis-common-protos",
    "proto-plus",
    "pyasn1",
    "pyasn1-modules",
    "cryptography",
    "cffi",
    "pycparser",
]
"""The closure of ray[default,train,tune,data], deepspeed and pydantic at .venv's versions, minus what
the GPU image has (/work/.library/device/KINDS.md's package list, 2026-11-17)."""
RAY_DROP = ("ray/jars/", ".js.map")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args], check=True)


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def strip_ray(wheel: Path) -> Path:
    """Ray's wheel minus RAY_DROP, its RECORD rewritten to the files kept (file modes kept: its binaries run)."""
    out = wheel.with_name(wheel.name.replace(".whl", ".tmp"))
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        kept, record = [], None
        for info in src.infolist():
            if info.filename.endswith(".dist-info/RECORD"):
                record = info
            elif not any(part in info.filename for part in RAY_DROP):
                data = src.read(info)
                dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
                kept.append(record_line(info.filename, data))
        dst.writestr(record, "\n".join(kept + [f"{record.filename},,"]) + "\n")
    out.replace(wheel)
    return wheel


def deepspeed_wheel(dest: Path) -> None:
    """DeepSpeed ships an sdist only: build its (pure Python) wheel with .venv's torch, no ops prebuilt."""
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), f"deepspeed=={version('deepspeed')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=WHEELS)
    args = parser.parse_args()
    args.dest.mkdir(exist_ok=True)
    for old in args.dest.glob("*.whl"):
        old.unlink()
    pins = [f"ray=={version('ray')}"] + [f"{name}=={version(name)}" for name in MISSING_THERE]
    pip("download", "--no-deps", *PLATFORM, "-d", str(args.dest), *pins)
    strip_ray(next(args.dest.glob("ray-*.whl")))
    deepspeed_wheel(args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    for w in wheels:
        print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
    print(
        f"{total / 2**20:7.2f} MiB in {len(wheels)} wheels under {args.dest} (the call's limit: 64 MiB with the "
        f"checkout)"
    )


if __name__ == "__main__":
    main()
