"""Model cost: parameters and forward+backward time per batch for the base and full CLASP model.

    python bench/model_cost.py                       # CPU, fp32
    python bench/model_cost.py --device cuda --bf16  # GPU, bf16 autocast, also peak memory

Batch of 16 videos at T=224 with UnAV-100 I3D dimensions (Dv=2048, Da=128, C=100); valid lengths
are drawn uniformly in [T/2, T] (fixed seed) so padding masks are exercised. Times the full
training step minus the optimizer: forward, compute_loss, backward. Prints a table and writes
bench/results/local/model_cost_<device>[_bf16].json (`--record`: the tracked bench/results/ one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.outputs import add_output_args, output_path  # noqa: E402
from clasp_dist.config import LossConfig, ModelConfig  # noqa: E402
from clasp_dist.model import CLASP  # noqa: E402
from clasp_dist.model.losses import compute_loss  # noqa: E402

VARIANTS = {"base": dict(use_meae=False, use_atp=False), "full": {}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batch(B: int, T: int, dv: int, da: int, C: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # [B, T]
    visual = torch.randn(B, T, dv, generator=g) * mask[..., None]  # [B, T, Dv]
    audio = torch.randn(B, T, da, generator=g) * mask[..., None]  # [B, T, Da]
    labels = torch.zeros(B, C)
    labels[torch.arange(B), torch.randint(0, C, (B,), generator=g)] = 1.0  # [B, C]
    return [x.to(device) for x in (visual, audio, mask, labels)]


def bench_one(d: int, variant: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=d, n_heads=args.heads, **VARIANTS[variant])
    model = CLASP(cfg, args.dv, args.da, args.classes).to(device).train()
    n_params = sum(p.numel() for p in model.parameters())
    visual, audio, mask, labels = make_batch(args.batch, args.T, args.dv, args.da, args.classes, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    loss_cfg = LossConfig()

    def step():
        with amp:
            out = model(visual, audio, mask, labels)
            total, _ = compute_loss(out, labels, mask, loss_cfg)
        total.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.iters):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    row = dict(
        d_model=d,
        variant=variant,
        params=n_params,
        params_m=round(n_params / 1e6, 3),
        step_ms_median=round(1e3 * statistics.median(times), 1),
        step_ms_min=round(1e3 * min(times), 1),
        videos_per_s=round(args.batch / statistics.median(times), 1),
    )
    if device.type == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    return row


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--T", type=int, default=224)
    p.add_argument("--dv", type=int, default=2048)
    p.add_argument("--da", type=int, default=128)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--dims", type=int, nargs="+", default=[256, 512])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=int, default=3)
    add_output_args(p)
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict:
    """`{"env": ..., "rows": [...]}`: one row per (d_model, variant); prints them as a table."""
    device = torch.device(args.device)
    rows = [bench_one(d, v, args, device) for d in args.dims for v in args.variants]
    env = dict(
        torch=torch.__version__,
        device=str(device),
        bf16=args.bf16,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        load_avg_1m_at_end=round(os.getloadavg()[0], 2),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        batch=args.batch,
        T=args.T,
        dv=args.dv,
        da=args.da,
        classes=args.classes,
        heads=args.heads,
        warmup=args.warmup,
        iters=args.iters,
        timed="forward + compute_loss + backward (no optimizer step)",
    )
    cols = ["d_model", "variant", "params_m", "step_ms_median", "step_ms_min", "videos_per_s"] + (
        ["peak_mem_gib"] if device.type == "cuda" else []
    )
    print(f"# {env['device']} bf16={args.bf16} torch={env['torch']} threads={env['threads']} B={args.batch} T={args.T}")
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" | ".join(f"{str(r[c]):>14}" for c in cols))
    return dict(env=env, rows=rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = measure(args)
    out = output_path(args, f"model_cost_{torch.device(args.device).type}{'_bf16' if args.bf16 else ''}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
