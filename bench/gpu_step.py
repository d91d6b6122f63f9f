"""Full-size UnAV-100 (`i3d` profile: 6,489 training videos, 2048/128-d) on one GPU in bf16.

    python bench/gpu_step.py [--epochs 2] [--data ROOT]

Generates the full semi-synthetic `i3d` dataset (about 6 GiB; skipped when --data is given), trains the
`unav100_i3d` preset (d=512) with one Ray Train worker on one GPU, DeepSpeed ZeRO-0 + bf16, and reports
epoch time, training videos/s and peak GPU memory (from metrics.jsonl), plus the validation/test pass.
Writes bench/results/gpu_step.json. Meant to run as one short script on a lent GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_step.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data", default="")
    parser.add_argument("--workdir", default="/tmp/clasp-gpu-bench")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench/gpu_step.py needs a CUDA GPU")
    os.environ["DS_ACCELERATOR"] = "cuda"
    from clasp_dist.cli import init_ray
    from clasp_dist.config import load_config
    from clasp_dist.data.synthetic import generate_dataset
    from clasp_dist.trainer import run_training

    work = Path(args.workdir)
    started = time.time()
    root = args.data or str(work / "i3d")
    if not args.data and not (Path(root) / "manifest.json").exists():
        generate_dataset(root, "i3d", seed=0, workers=min(16, os.cpu_count() or 1))
    generation_s = time.time() - started
    cpus = max(1, (os.cpu_count() or 2) - 2)
    cfg = load_config(["config=unav100_i3d", f"data.root={root}", f"train.epochs={args.epochs}",
                       "train.use_gpu=true", "deepspeed.bf16=true", f"train.cpus_per_worker={min(8, cpus)}",
                       "eval.actor_num_gpus=0.2", "eval.actor_num_cpus=1", f"train.eval_every={args.epochs}",
                       f"run.output_dir={work / 'runs'}", f"run.storage_path={work / 'runs'}",
                       f"run.name=gpu-{int(time.time())}", "train.progress_bar=off", "data.read_num_cpus=1"])
    init_ray()
    summary = run_training(cfg)
    epochs = [json.loads(line) for line in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    out = {"device": torch.cuda.get_device_name(0), "dataset_generation_s": generation_s,
           "epochs": [{k: e.get(k) for k in ("epoch", "epoch_time_s", "videos_per_s", "peak_gpu_mem_gb", "loss",
                                             "val_average")} for e in epochs],
           "test_average": summary.metrics["test"]["average"], "wall_time_s": summary.metrics["wall_time_s"]}
    print(json.dumps(out, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
