"""Shared command-line plumbing for jobs/: `key=value` overrides, `--help` text, Ray start-up."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from .config import ConfigError, help_text, load_config


def override_parser(description: str, usage_examples: str, argv: list[str] | None = None) -> argparse.ArgumentParser:
    """`--help` lists every key with the value that will run for the preset and overrides in `argv`."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"{usage_examples}\n\n{help_text(sys.argv[1:] if argv is None else argv)}")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config=PRESET selects a preset; any other dotted key overrides a field")
    return parser


def config_from_args(overrides: list[str]):
    try:
        return load_config(overrides)
    except ConfigError as err:
        sys.exit(f"error: {err}")


def init_ray(num_cpus: int | None = None) -> None:
    """Join RAY_ADDRESS's cluster if set (ray job submit), else start a local one quietly.

    DS_ACCELERATOR is not decided here: drivers often run on CPU-only heads, so each train worker picks
    DeepSpeed's accelerator from its own device (`engine.use_accelerator_for`).
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    from ray.data import DataContext

    from .quiet_logs import filter_forwarded_logs, quiet_ray_loggers

    quiet_ray_loggers()  # after importing ray.data: its import resets the "ray.data" logger to DEBUG

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()
    ctx.print_on_execution_start = False
    quiet = ray.LoggingConfig(log_level="WARNING")
    env = {"RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_DEDUP_LOGS": "0"}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING, logging_config=quiet, runtime_env={"env_vars": env})
    else:
        ray.init(num_cpus=num_cpus, logging_level=logging.WARNING, logging_config=quiet,
                 runtime_env={"env_vars": env})
    filter_forwarded_logs()

