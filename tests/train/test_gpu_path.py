"""The CUDA path, proven on CPU where CPU can show it: bf16 through a real DeepSpeed engine,
DeepSpeed's accelerator chosen per worker, collectives on the worker's device, batch arithmetic of every
documented command checked on the driver, validation that never asks for a GPU held by training."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import torch

from clasp_dist.config import load_config
from clasp_dist.training.engine import accelerator_name, deepspeed_config, engine_zero_stage, plan_batches
from tests.helpers import REPO, TINY, free_port

DOC_FILES = [
    REPO / "README.md",
    REPO / "cluster" / "kuberay" / "rayjob.yaml",
    REPO / "jobs" / "train.py",
    REPO / "jobs" / "tune.py",
    *sorted((REPO / "docs").glob("*.md")),
]


def documented_commands() -> list[tuple[str, int, str]]:
    """(preset, train.num_workers, file) for every documented command that names a worker count."""
    import yaml

    found = set()
    for path in DOC_FILES:
        text = re.sub(r"\\\\?\n\s*", " ", path.read_text())  # join shell line continuations
        if path.suffix == ".yaml":
            text = yaml.safe_load(path.read_text())["spec"]["entrypoint"]
        for line in text.splitlines():
            workers = re.search(r"train\.num_workers=(\d+)", line)
            preset = re.search(r"\bconfig=(\w+)", line)
            if workers and int(workers.group(1)) > 0:  # 0 appears only as a documented refusal
                found.add((preset.group(1) if preset else "small", int(workers.group(1)), path.name))
    return sorted(found)


def test_documented_commands_are_found():
    commands = documented_commands()
    assert ("unav100_i3d", 8, "README.md") in commands and ("unav100_i3d", 1, "README.md") in commands
    assert any(name == "rayjob.yaml" for _, _, name in commands)


@pytest.mark.parametrize("preset, workers, source", documented_commands())
def test_documented_worker_counts_fit_the_presets(preset, workers, source):
    cfg = load_config([f"config={preset}", f"train.num_workers={workers}"])
    plan = plan_batches(cfg, workers)
    per_step = cfg.train.batch_size if not cfg.deepspeed.grad_accum else 16 * workers  # the GPU presets: 16 per GPU
    assert plan.global_batch_size == per_step


@pytest.mark.parametrize("preset", ["unav100_i3d", "unav100_onepeace", "anet13"])
@pytest.mark.parametrize("workers", [1, 2, 8, 16, 24, 64])
def test_gpu_presets_keep_the_per_gpu_batch_on_any_worker_count(preset, workers):
    """16 videos per GPU on any cluster: the global batch grows with it, the lr by sqrt of the growth (1 GPU: the
    preset's own batch and lr)."""
    from clasp_dist.training.engine import scaled_lr

    cfg = load_config([f"config={preset}"])
    plan = plan_batches(cfg, workers)
    assert (plan.micro_batch_size, plan.grad_accum, plan.global_batch_size) == (16, 1, 16 * workers)
    assert scaled_lr(cfg, plan) == pytest.approx(cfg.optim.lr * workers**0.5)


@pytest.mark.parametrize("workers", [1, 8, 16, 64])
def test_dry_run_prints_the_plan_without_ray(workers):
    """`clasp train config=unav100_i3d train.use_gpu=true train.num_workers=N --dry-run`: the resolved batch
    plan, learning rate and resource request; no Ray started (in a fresh process: Ray is never even imported)."""
    import sys

    argv = ["train", "config=unav100_i3d", "train.use_gpu=true", f"train.num_workers={workers}", "--dry-run"]
    probe = f"import sys; from clasp_dist.cli import main; rc = main({argv!r}); print('ray imported:', 'ray' in sys.modules); sys.exit(rc)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ray imported: False" in out, out
    assert f"16 per worker x 1 accumulation x {workers} worker(s) = global {16 * workers}" in out, out
    assert f"learning rate: peak {1e-4 * workers**0.5:.4g} " in out, out
    assert f"each worker CPU 0.5, GPU 1; at once CPU {0.5 * workers + 0.25:g}, GPU {workers}" in out, out


def test_dry_run_refuses_batch_arithmetic_that_does_not_work_out(capsys):
    from clasp_dist.cli import main

    args = ["train", "config=unav100_i3d", "deepspeed.grad_accum=0", "train.num_workers=24", "--dry-run"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert "train.batch_size=16 is not a multiple" in err


def test_batch_arithmetic_is_refused_on_the_driver_before_ray(tmp_path):
    """A fixed global batch of 16 (deepspeed.grad_accum=0) with micro 16 and 8 workers fails in run_training
    before Ray or data is touched."""
    from clasp_dist.training.driver import run_training

    cfg = load_config(
        [
            "config=unav100_i3d",
            "deepspeed.micro_batch_size=16",
            "deepspeed.grad_accum=0",
            "train.num_workers=8",
            "train.use_gpu=true",
            f"run.output_dir={tmp_path}",
            f"run.storage_path={tmp_path}",
            f"data.root={tmp_path / 'nowhere'}",
        ]
    )
    with pytest.raises(ValueError, match=r"train.batch_size=16 is not a multiple.*train.num_workers=8"):
        run_training(cfg)
    assert not list(tmp_path.iterdir())  # nothing written, nothing requested


@pytest.mark.parametrize("workers", [1, 2])
def test_gpu_bench_trains_what_the_issue_asks_and_fits_the_checks(workers):
    """bench/gpu_step.py's device run: unav100_i3d, bf16, ZeRO-2 on GPUs, the batch arithmetic valid, validation
    in-process while training holds the GPUs, the test pass on half a GPU after it."""
    from bench.gpu_step import overrides, parse_args
    from clasp_dist.training.worker import validation_config, validation_mode

    cfg = load_config(overrides(parse_args([]), workers, "/data/i3d", cpus=16))
    assert cfg.model.d_model == 512 and cfg.deepspeed.bf16 and engine_zero_stage(cfg) == 2 and cfg.train.use_gpu
    assert plan_batches(cfg, workers).global_batch_size == 16 * workers  # 16 per GPU
    assert validation_mode(cfg) == "in-process" and validation_config(cfg).eval.actor_num_gpus == 0.0
    assert cfg.eval.actor_num_gpus == 0.5 and cfg.train.eval_every == cfg.train.epochs == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_gpu_bench_cpu_check_leaves_cpus_for_validation(workers):
    """`bench/gpu_step.py --cpu` on 2 cores stalled at its first validation: the worker (1 CPU) and the evaluator
    actor (1 CPU) held both, so the evaluator's read tasks never ran. Now workers + actor + reads fit."""
    from bench.gpu_step import overrides, parse_args
    from clasp_dist.training.worker import validation_mode
    from clasp_dist.tuning import TRIAL_CPU, cpus_per_trial

    cfg = load_config(overrides(parse_args(["--cpu"]), workers, "/data/i3d", cpus=2))
    assert validation_mode(cfg) == "actors" and cpus_per_trial(cfg) - TRIAL_CPU <= 2


def test_accelerator_follows_the_workers_device_not_the_drivers():
    assert not torch.cuda.is_available()  # this driver has no GPU...
    assert accelerator_name(torch.device("cuda", 3)) == "cuda"  # ...a worker that holds one still gets cuda
    assert accelerator_name(torch.device("cuda")) == "cuda"
    assert accelerator_name(torch.device("cpu")) == "cpu"


def test_dev_does_not_force_a_cpu_accelerator(tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import os; print(repr(os.environ.get('DS_ACCELERATOR')))\n")
    env = {k: v for k, v in os.environ.items() if k != "DS_ACCELERATOR"}
    out = subprocess.run([str(REPO / "dev"), str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_init_ray_ships_no_accelerator_to_workers():
    import inspect

    from clasp_dist import cli

    assert "DS_ACCELERATOR" not in inspect.getsource(cli.init_ray).split('"""')[-1]


def test_collective_tensors_live_on_the_workers_device():
    from clasp_dist.training.worker import collective_tensor

    for device in (torch.device("cpu"), torch.device("meta")):  # meta stands in for a device that is not cpu
        tensor = collective_tensor([7], device)
        assert tensor.device.type == device.type and tensor.dtype == torch.int64


def test_bf16_accumulates_gradients_in_fp32_at_every_stage():
    for stage, runs_as in ((0, 1), (1, 1), (2, 2), (3, 3)):
        cfg = load_config([f"deepspeed.zero_stage={stage}", "deepspeed.bf16=true"])
        ds = deepspeed_config(cfg, plan_batches(cfg, 1))
        assert ds["data_types"] == {"grad_accum_dtype": "fp32"} and ds["zero_optimization"]["stage"] == runs_as
        assert engine_zero_stage(cfg) == runs_as
    fp32 = load_config(["deepspeed.zero_stage=0"])
    assert "data_types" not in deepspeed_config(fp32, plan_batches(fp32, 1)) and engine_zero_stage(fp32) == 0


def test_validation_during_gpu_training_requests_no_gpu():
    from clasp_dist.training.worker import validation_config, validation_mode

    cfg = load_config(["train.use_gpu=true", "eval.actor_num_gpus=0.2"])
    assert validation_mode(cfg) == "in-process"
    assert validation_config(cfg).eval.actor_num_gpus == 0.0
    cpu = load_config(["eval.actor_num_gpus=0.2"])
    assert validation_mode(cpu) == "actors" and validation_config(cpu).eval.actor_num_gpus == 0.0


def test_in_process_validation_scores_every_video(tiny_root):
    """What rank 0 runs while the workers hold GPUs: the evaluator's predictor in-process, no Ray."""
    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.worker import LoopContext, validate

    cfg = load_config(TINY + [f"data.root={tiny_root}", "train.use_gpu=true", "eval.actor_num_gpus=0.5"])
    info, manifest = dataset_info(tiny_root, cfg)
    weights = build_model(cfg, info).state_dict()
    ctx = LoopContext(
        cfg=cfg,
        info=info,
        data_root=tiny_root,
        run_dir="",
        rank=0,
        world_size=1,
        device=torch.device("cpu"),
        interactive=False,
        num_train_videos=0,
    )
    result = validate(weights, ctx)
    assert 0.0 <= result.average <= 1.0 and len(result.mAP) == 9


@pytest.fixture(scope="module")
def gloo_world_of_one():
    """A one-process gloo group, as Ray Train gives each worker (DeepSpeed reuses it)."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    os.environ.update(
        RANK="0",
        WORLD_SIZE="1",
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
    )
    dist.init_process_group("gloo", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _two_steps(tiny_root: str, *extra: str):
    """Build a real DeepSpeed engine and run two optimizer steps (4 micro-batches of 2) through the loop's
    own epoch function. Returns (engine, ema, initial EMA shadow, epoch stats, cfg, dataset info)."""
    from clasp_dist.data.batch import collate_rows
    from clasp_dist.data.split_reader import iter_local_samples
    from clasp_dist.model import build_model
    from clasp_dist.training.driver import dataset_info
    from clasp_dist.training.engine import build_engine
    from clasp_dist.training.worker import LoopContext, _run_epoch, build_ema, seed_everything

    cfg = load_config(
        TINY
        + [
            f"data.root={tiny_root}",
            "train.batch_size=4",
            "deepspeed.micro_batch_size=2",
            "optim.ema_decay=0.5",
            "train.log_every_steps=1",
            *extra,
        ]
    )
    info, _ = dataset_info(tiny_root, cfg)
    seed_everything(0)
    engine = build_engine(
        build_model(cfg, info), cfg, plan_batches(cfg, 1), steps_per_epoch=2, device=torch.device("cpu")
    )
    ema = build_ema(engine, cfg)
    initial = {k: v.clone() for k, v in ema.shadow.items()}
    rows = [row for _, row in zip(range(8), iter_local_samples(tiny_root, "train", cfg.data, cfg.storage))]
    batches = [collate_rows(rows[i : i + 2], info.num_classes) for i in range(0, 8, 2)]
    ctx = LoopContext(
        cfg=cfg,
        info=info,
        data_root=tiny_root,
        run_dir="",
        rank=0,
        world_size=1,
        device=torch.device("cpu"),
        interactive=False,
        num_train_videos=8,
    )
    stats = _run_epoch(engine, ema, batches, ctx, epoch=0, writer=None, global_step=0)
    assert stats["global_step"] == 2 and stats["train_videos"] == 8
    assert torch.isfinite(torch.tensor(stats["loss"])) and stats["loss"] > 0
    assert ema.steps == 2 and any(not torch.equal(initial[k], ema.shadow[k]) for k in initial)
    return engine, ema, stats, cfg, info


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2])
def test_bf16_engine_trains_two_steps_through_the_train_loop(gloo_world_of_one, tiny_root, stage):
    """A real DeepSpeed engine with bf16 (parameters bf16, buffers fp32), two optimizer steps through the
    loop's own epoch function; EMA and exported weights come from the fp32 masters, not the bf16 copy."""
    from clasp_dist.training.engine import fp32_weights
    from clasp_dist.training.worker import _inference_weights

    engine, ema, _, _, _ = _two_steps(tiny_root, "deepspeed.bf16=true", f"deepspeed.zero_stage={stage}")
    assert engine.module.encoder.pos_table.dtype == torch.float32  # DeepSpeed leaves buffers alone...
    assert next(engine.module.parameters()).dtype == torch.bfloat16  # ...and casts parameters
    masters = fp32_weights(engine.module)
    name = next(iter(dict(engine.module.named_parameters())))
    module_weight = dict(engine.module.named_parameters())[name]
    assert module_weight.dtype == torch.bfloat16 and masters[name].dtype == torch.float32
    assert not torch.equal(masters[name], module_weight.float())  # the master keeps bits bf16 drops
    assert torch.equal(masters[name].to(torch.bfloat16), module_weight.detach())
    assert all(v.dtype == torch.float32 for v in ema.shadow.values())
    exported = _inference_weights(engine, None, load_config(TINY + ["eval.use_ema=false"]))
    assert torch.equal(exported[name], masters[name].cpu())


@pytest.mark.slow
def test_zero3_ema_and_export_are_whole_fp32_weights(gloo_world_of_one, tiny_root):
    """ZeRO-3 partitions the module: the EMA (every step here) and the export still hold every weight whole."""
    from clasp_dist.model import build_model
    from clasp_dist.training.checkpoint import check_weights_match
    from clasp_dist.training.worker import _inference_weights

    engine, ema, _, cfg, info = _two_steps(
        tiny_root, "deepspeed.bf16=true", "deepspeed.zero_stage=3", "optim.ema_every=1"
    )
    weights = _inference_weights(engine, ema, cfg)
    model = build_model(cfg, info)
    check_weights_match(weights, model, "ZeRO-3 export")
    model.load_state_dict(weights)
    assert all(v.dtype == torch.float32 for v in weights.values() if v.dtype.is_floating_point)
