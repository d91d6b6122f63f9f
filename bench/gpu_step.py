"""First GPU figures in one short run: the `unav100_i3d` preset (d=512), bf16, ZeRO-2, on 1 GPU and on 2 when present.

    python bench/gpu_step.py                      # generated i3d-profile data, 1024 videos per split (2048/128-d)
    python bench/gpu_step.py --data ROOT          # a prepared dataset instead (local path or s3://...)
    python bench/gpu_step.py --cpu --limit 24     # the same script on CPU (a smoke check of the script itself)

Sized to fit one device call of about 5 minutes on a single GPU machine: the dataset is generated once
(cached under --workdir), each worker count trains --epochs epochs (default 3) through `jobs/train.py`'s
own path (`run_training`: Ray Train + Ray Data + DeepSpeed), validation only after the last epoch
(in-process on rank 0's GPU, as during any GPU training), then the test pass with one evaluator actor on
half a GPU (the GPUs are free by then). Epoch 1 is a warm-up and is excluded from the summary; peak GPU
memory is reset at the start of every epoch, so each epoch's figure is its own.
Writes bench/results/gpu_step.json (bench/results/gpu_step_cpu.json with --cpu).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"


def overrides(args, workers: int, root: str, cpus: int) -> list[str]:
    """The unav100_i3d preset in bf16 + ZeRO-2 for one worker count (micro batch = 16 / workers)."""
    base = ["config=unav100_i3d", f"data.root={root}", f"train.epochs={args.epochs}", f"train.num_workers={workers}",
            "deepspeed.bf16=true", "deepspeed.zero_stage=2", f"train.eval_every={args.epochs}",
            f"train.cpus_per_worker={max(1, min(8, (cpus - 2) // workers))}", "train.progress_bar=off",
            f"run.output_dir={args.workdir}/runs", f"run.storage_path={args.workdir}/runs",
            f"run.name=gpu-step-{'cpu' if args.cpu else 'gpu'}{workers}-{int(time.time())}", "train.max_failures=0"]
    if args.cpu:  # the smoke check: a small model, CPU actors
        return base + ["model.d_model=64", "model.n_heads=2", "eval.actor_num_cpus=1"]
    return base + ["train.use_gpu=true", "eval.actor_num_gpus=0.5", "eval.actor_num_cpus=2"]


def summarise(epochs: list[dict], workers: int) -> dict:
    """Per-epoch figures, and their mean over the epochs after the warm-up (epoch 1)."""
    keys = ("epoch", "epoch_time_s", "videos_per_s", "peak_gpu_mem_gb", "loss", "val_average")
    timed = epochs[1:] or epochs
    return {"workers": workers, "epochs": [{k: e.get(k) for k in keys} for e in epochs],
            "timed_epochs": [e["epoch"] + 1 for e in timed],
            "videos_per_s": statistics.mean(e["videos_per_s"] for e in timed),
            "epoch_time_s": statistics.mean(e["epoch_time_s"] for e in timed),
            "peak_gpu_mem_gb": max((e.get("peak_gpu_mem_gb") or 0.0) for e in timed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per worker count (the first is a warm-up)")
    parser.add_argument("--limit", type=int, default=1024, help="videos per split of the generated i3d data")
    parser.add_argument("--data", default="", help="a prepared dataset root instead of generated data")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts (default: 1, and 2 when two GPUs are present)")
    parser.add_argument("--workdir", default="/tmp/clasp-gpu-bench")
    parser.add_argument("--cpu", action="store_true", help="run on CPU (checks the script, not the GPU)")
    args = parser.parse_args()
    import torch

    gpus = torch.cuda.device_count()
    if not args.cpu and gpus == 0:
        sys.exit("bench/gpu_step.py needs a CUDA GPU (use --cpu to check the script on CPU)")
    from clasp_dist.cli import init_ray
    from clasp_dist.config import load_config
    from clasp_dist.data.roots import ensure_dataset
    from clasp_dist.trainer import run_training

    started = time.time()
    cpus = os.cpu_count() or 2
    data_cfg = load_config(["config=unav100_i3d", f"data.synth_limit_per_split={args.limit}",
                            f"data.cache_dir={args.workdir}/datasets"]).data
    root = args.data or ensure_dataset(data_cfg, workers=min(16, cpus), progress=False)
    generation_s = time.time() - started
    init_ray()
    counts = args.workers or ([1, 2] if gpus >= 2 else [1])
    runs = []
    for workers in counts:
        summary = run_training(load_config(overrides(args, workers, root, cpus)))
        epochs = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
        runs.append({**summarise(epochs, workers), "test_average": summary.metrics["test"]["average"],
                     "wall_time_s": summary.metrics["wall_time_s"]})
        print(f"[gpu_step] {workers} worker(s): {runs[-1]['videos_per_s']:.1f} videos/s, "
              f"{runs[-1]['epoch_time_s']:.1f} s/epoch, peak {runs[-1]['peak_gpu_mem_gb']:.2f} GiB (after warm-up)")
    out = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(0), "gpus_present": gpus,
           "torch": torch.__version__, "data": args.data or f"generated i3d profile, {args.limit} videos per split",
           "data_root": root, "dataset_generation_s": generation_s, "precision": "bf16", "zero_stage": 2,
           "preset": "unav100_i3d", "runs": runs, "total_s": time.time() - started}
    print(json.dumps(out, indent=1))
    path = RESULTS / ("gpu_step_cpu.json" if args.cpu else "gpu_step.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
