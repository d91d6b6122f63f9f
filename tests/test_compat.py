"""Each private API that clasp_dist/compat.py relies on still exists, with the shape it uses, in the installed
versions; and the version guard fails with a message naming the package and both versions."""

from __future__ import annotations

import inspect
import logging

import pytest

from clasp_dist import compat


def test_installed_versions_are_the_tested_ones():
    for package in compat.TESTED:
        compat.require(package)


def test_guard_names_package_and_versions(monkeypatch):
    monkeypatch.setitem(compat.TESTED, "ray", "0.0.1")
    compat.require.cache_clear()
    try:
        with pytest.raises(compat.UntestedVersionError, match=r"ray \S+ is installed.*written for ray 0\.0\.1"):
            compat.ray_global_state()
    finally:
        compat.require.cache_clear()


def test_guard_is_not_run_at_import():
    import subprocess
    import sys

    modules = "clasp_dist.quiet_logs, clasp_dist.cli.ray_start, clasp_dist.training.capacity, "
    modules += "clasp_dist.training.engine, clasp_dist.training.run_identity, clasp_dist.data.filesystem"
    code = f"import {modules}; from clasp_dist import compat; print(compat.require.cache_info().currsize)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_ray_print_worker_logs_signature():
    params = list(inspect.signature(compat.ray_worker_module().print_worker_logs).parameters)
    assert params[:3] == ["data", "print_file", "ignore_prefix"]


def test_ray_log_deduplicators_have_deduplicate():
    dedups = compat.ray_log_deduplicators()
    assert len(dedups) == 2
    for dedup in dedups:
        assert list(inspect.signature(dedup.deduplicate).parameters) == ["batch"]


def test_ray_global_state_reads_the_autoscaler_config():
    state = compat.ray_global_state()
    assert callable(state.get_max_resources_from_cluster_config)
    assert callable(state.get_cluster_config)


def test_ray_autoscaling_status_key_and_kv_reader():
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    assert isinstance(ray_constants.DEBUG_AUTOSCALING_STATUS, str)
    assert "key" in inspect.signature(internal_kv._internal_kv_get).parameters


def test_ray_readonly_node_type_names():
    assert compat.readonly_node_type("abc") != compat.readonly_node_type("abd")
    assert "abc" in compat.readonly_node_type("abc")


def test_ray_default_system_temp_dir():
    assert compat.ray_default_system_temp_dir()


def test_ray_data_actor_location_tracker_exists():
    from ray.data._internal.execution.node_trackers import get_or_create_actor_location_tracker

    assert inspect.signature(get_or_create_actor_location_tracker).parameters == {}


def test_ray_private_quiet_loggers_are_ray_modules():
    import importlib

    for name, level in compat.RAY_PRIVATE_QUIET_LOGGERS.items():
        importlib.import_module(name)  # the logger is named after its module
        assert level == logging.ERROR


def test_ray_train_snapshot_file_name():
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

    assert compat.RAY_TRAIN_SNAPSHOT_FILE == CHECKPOINT_MANAGER_SNAPSHOT_FILENAME


def test_deepspeed_compatible_ops_has_shm_comm():
    import deepspeed.ops

    assert "deepspeed_shm_comm" in deepspeed.ops.__compatible_ops__


def test_gcsfs_request_is_a_wrapped_retry():
    cls = compat.gcsfs_core_class()
    assert hasattr(cls._request, "__wrapped__")
    from gcsfs.retry import retry_request

    assert "retries" in inspect.signature(retry_request).parameters
    assert inspect.iscoroutinefunction(compat.gcsfs_request_with_retries(2)) == inspect.iscoroutinefunction(
        cls._request
    )
