"""Driver for test_multinode.py, run in its own process: a head plus one more node on this machine
(`ray.cluster_utils.Cluster`), then one 2-worker STRICT_SPREAD training across them.

usage: python multinode_driver.py OUT_DIR DATA_ROOT [key=value ...]; prints one JSON line `RESULT {...}`.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def main(out_dir: str, data_root: str, extra: list[str]) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from clasp_dist.config import load_config
    from clasp_dist.training.driver import run_training

    node = {"num_cpus": 2, "object_store_memory": 128 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        cfg = load_config(
            [
                "config=tiny",
                "train.epochs=1",
                "train.progress_bar=off",
                f"data.root={data_root}",
                f"run.output_dir={out_dir}",
                f"run.storage_path={out_dir}",
                "run.name=multinode",
                "train.num_workers=2",
                "train.placement_strategy=STRICT_SPREAD",
                "deepspeed.zero_stage=2",
                *extra,
            ]
        )
        summary = run_training(cfg)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        print(
            "RESULT "
            + json.dumps(
                {"nodes": nodes, "checkpoint": summary.metrics["checkpoint"], "run_dir": str(summary.run_dir)}
            ),
            flush=True,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
