"""ZeRO-2's partitioned optimizer must train exactly as ZeRO-0: two real gloo ranks, each building a real
DeepSpeed engine at both stages and running the train loop's own epoch function on its half of the same rows.

This is the engine-level half of what the Ray Train runs check (tests/train/test_train_e2e.py drives two
ZeRO-2 workers end to end); here nothing but DeepSpeed and the loop sits between the data and the numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.helpers import TINY, free_port

pytestmark = pytest.mark.slow

WORLD = 2
STAGES = (0, 2)


def _join_gloo(rank: int, port: int) -> None:
    """This process as `rank` of a WORLD-rank gloo group on the loopback (no launcher, no Ray)."""
    import torch.distributed as dist

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)


def _rank_main(rank: int, port: int, tiny_root: str, out: str) -> None:
    """One rank: an epoch of 2 optimizer steps (batch 8 = 2 ranks x micro 2 x accumulation 2) at each stage."""
    import torch.distributed as dist

    from clasp_dist.config import load_config
    from clasp_dist.data.batch import collate_rows
    from clasp_dist.data.split_reader import iter_local_samples
    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.engine import build_engine, fp32_weights, plan_batches
    from clasp_dist.training.worker import LoopContext, _run_epoch, seed_everything

    _join_gloo(rank, port)
    results = {}
    for stage in STAGES:
        cfg = load_config(
            TINY
            + [
                f"data.root={tiny_root}",
                "train.batch_size=8",
                "deepspeed.micro_batch_size=2",
                f"deepspeed.zero_stage={stage}",
                "optim.ema_decay=0",
            ]
        )
        info, _ = dataset_info(tiny_root, cfg)
        seed_everything(0)
        engine = build_engine(
            build_model(cfg, info), cfg, plan_batches(cfg, WORLD), steps_per_epoch=2, device=torch.device("cpu")
        )
        rows = [row for _, row in zip(range(16), iter_local_samples(tiny_root, "train", cfg.data, cfg.storage))]
        mine = rows[rank::WORLD]  # 8 rows: 4 micro-batches of 2
        batches = [collate_rows(mine[i : i + 2], info.num_classes) for i in range(0, len(mine), 2)]
        ctx = LoopContext(
            cfg=cfg,
            info=info,
            data_root=tiny_root,
            run_dir="",
            rank=rank,
            world_size=WORLD,
            device=torch.device("cpu"),
            interactive=False,
            num_train_videos=16,
        )
        stats = _run_epoch(engine, None, batches, ctx, epoch=0, writer=None, global_step=0)
        from deepspeed.comm import comm

        results[stage] = {
            "loss": stats["loss"],
            "steps": stats["global_step"],
            "shm_op_built": comm.cdb.shm_comm_op is not None,
        }
        torch.save(fp32_weights(engine.module), Path(out) / f"rank{rank}_stage{stage}.pt")
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def test_zero_stage_0_and_2_train_the_same(tiny_root, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(free_port(), tiny_root, str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        zero0, zero2 = result[str(STAGES[0])], result[str(STAGES[1])]
        assert zero0["steps"] == zero2["steps"] == 2
        assert not zero0["shm_op_built"]  # the inference-only CPU op is never JIT-compiled for training
        assert zero0["loss"] == pytest.approx(zero2["loss"], rel=1e-5)
        w0 = torch.load(tmp_path / f"rank{rank}_stage0.pt")
        w2 = torch.load(tmp_path / f"rank{rank}_stage2.pt")
        assert set(w0) == set(w2)
        for name in w0:  # the optimizer stepped both the same way (a partitioning bug shows up here first)
            torch.testing.assert_close(w2[name], w0[name], rtol=1e-5, atol=1e-6, msg=name)
    start = torch.load(tmp_path / "rank0_stage0.pt")
    other = torch.load(tmp_path / "rank1_stage0.pt")
    assert all(torch.equal(start[k], other[k]) for k in start)  # data parallel: every rank holds the same model


class FullWeightsEMA:
    """The reference: the straightforward EMA of the whole fp32 master weights, gathered every optimizer step
    (what the training loop did before its EMA kept to each rank's own partition)."""

    def __init__(self, module, decay: float):
        from clasp_dist.training.engine import fp32_weights

        self.read, self.decay, self.steps = fp32_weights, decay, 0
        self.shadow = {k: v.clone() for k, v in fp32_weights(module).items()}

    @torch.no_grad()
    def update(self, module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for key, value in self.read(module).items():
            self.shadow[key].mul_(decay).add_(value, alpha=1 - decay)


class BothEMAs:
    """Steps the EMA under test and the reference side by side; counts the collectives of the former's updates."""

    def __init__(self, ema, reference):
        self.ema, self.reference, self.update_collectives = ema, reference, 0

    def update(self, module) -> None:
        import torch.distributed as dist

        original, counter = dist.all_reduce, [0]

        def counting(*args, **kwargs):
            counter[0] += 1
            return original(*args, **kwargs)

        dist.all_reduce = counting
        try:
            self.ema.update(module)
        finally:
            dist.all_reduce = original
        self.update_collectives += counter[0]
        self.reference.update(module)


def _ema_rank_main(rank: int, port: int, tiny_root: str, out: str) -> None:
    """One rank of a bf16 ZeRO-2 run with the EMA on: 4 optimizer steps (batch 4 = 2 ranks x micro 2)."""
    import torch.distributed as dist

    from clasp_dist.config import load_config
    from clasp_dist.data.batch import collate_rows
    from clasp_dist.data.split_reader import iter_local_samples
    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.engine import build_engine, plan_batches
    from clasp_dist.training.worker import LoopContext, _run_epoch, build_ema, seed_everything

    _join_gloo(rank, port)
    cfg = load_config(
        TINY
        + [
            f"data.root={tiny_root}",
            "train.batch_size=4",
            "deepspeed.micro_batch_size=2",
            "deepspeed.zero_stage=2",
            "deepspeed.bf16=true",
            "optim.ema_decay=0.9",
        ]
    )
    info, _ = dataset_info(tiny_root, cfg)
    seed_everything(0)
    engine = build_engine(
        build_model(cfg, info), cfg, plan_batches(cfg, WORLD), steps_per_epoch=4, device=torch.device("cpu")
    )
    both = BothEMAs(build_ema(engine, cfg), FullWeightsEMA(engine.module, cfg.optim.ema_decay))
    rows = [row for _, row in zip(range(16), iter_local_samples(tiny_root, "train", cfg.data, cfg.storage))]
    mine = rows[rank::WORLD]
    batches = [collate_rows(mine[i : i + 2], info.num_classes) for i in range(0, len(mine), 2)]
    ctx = LoopContext(cfg, info, tiny_root, "", rank, WORLD, torch.device("cpu"), False, 16)
    stats = _run_epoch(engine, both, batches, ctx, epoch=0, writer=None, global_step=0)
    state = both.ema.state_dict()  # gathered: every rank joins
    reloaded = build_ema(engine, cfg)
    reloaded.load_state_dict(state)  # each rank keeps its own slices of the whole average again
    torch.save(
        {
            "steps": stats["global_step"],
            "update_collectives": both.update_collectives,
            "split": len(both.ema._split),
            "ema": state["shadow"],
            "reference": both.reference.shadow,
            "reloaded": reloaded.state_dict()["shadow"],
            "masters_moved": any(
                not torch.equal(both.reference.shadow[k], v) for k, v in both.reference.read(engine.module).items()
            ),
        },
        Path(out) / f"ema_rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_bf16_zero2_ema_on_own_partition_equals_full_weights_ema(tiny_root, tmp_path):
    """bf16 ZeRO-2 with the EMA on, 2 ranks: the EMA kept on each rank's own fp32 partition gives the same
    whole average (1e-6) as the EMA of the gathered full weights, without a collective per update."""
    import torch.multiprocessing as mp

    mp.spawn(_ema_rank_main, args=(free_port(), tiny_root, str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"ema_rank{rank}.pt")
        assert got["steps"] == 4 and got["masters_moved"]  # the average lags weights that trained
        assert got["split"] > 0  # the masters really are partitioned over the ranks
        assert got["update_collectives"] == 0
        assert set(got["ema"]) == set(got["reference"])
        for name, expected in got["reference"].items():
            torch.testing.assert_close(got["ema"][name], expected, rtol=0, atol=1e-6, msg=name)
            assert torch.equal(got["reloaded"][name], got["ema"][name]), name
