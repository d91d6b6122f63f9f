"""Two Ray nodes on one machine (`ray.cluster_utils.Cluster`, in its own driver process so the test
session's Ray stays untouched): a 2-worker ZeRO-2 run placed STRICT_SPREAD, one worker per node."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import epoch_metrics, job_env, run_job

pytestmark = pytest.mark.slow


def test_strict_spread_puts_one_worker_on_each_node(tiny_root, tmp_path):
    driver = Path(__file__).with_name("multinode_driver.py")
    done = run_job([sys.executable, str(driver), str(tmp_path), tiny_root], job_env(), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert len(result["nodes"]) == 2

    workers = json.loads((tmp_path / "multinode" / "workers.json").read_text())
    assert sorted(w["rank"] for w in workers) == [0, 1]
    assert {w["node_id"] for w in workers} == set(result["nodes"])  # one rank per node

    checkpoint = Path(result["checkpoint"])
    state = checkpoint / "deepspeed" / "state"
    shards = sorted(p.name for p in state.iterdir())
    assert any("zero_pp_rank_0_" in name and "optim_states" in name for name in shards), shards
    assert any("zero_pp_rank_1_" in name and "optim_states" in name for name in shards), shards
    assert (checkpoint / "rng_rank0.pt").is_file() and (checkpoint / "rng_rank1.pt").is_file()
    assert [m["epoch"] for m in epoch_metrics(tmp_path / "multinode")] == [0]
    assert (tmp_path / "multinode" / "metrics.json").is_file()
