"""Every use of another library's private internals, in one place, each checked against the version it was written for.

Ray, DeepSpeed and gcsfs expose no supported API for a few things clasp-dist needs (filtering the log lines Ray
forwards to the driver, reading the autoscaler's view of the cluster, skipping a DeepSpeed op build, a per-request
retry count in gcsfs). The code here reaches into their private modules; nothing else in clasp_dist does. Each
shim first calls `require(package)`, which raises `UntestedVersionError` naming the package, the installed version
and the version the shim was written for (`TESTED`) when they differ: a private API changes without notice, so an
upgrade fails at the first use with one clear line instead of a wrong result later. Importing this module (or the
project) checks nothing. tests/test_compat.py asserts that each private attribute and signature used here still
exists in the installed versions, so an upgrade that breaks one fails there first.

Python's tarfile (3.11) is the other private surface (a member hook of the tar reader); it moves here later.
"""

from __future__ import annotations

import functools
import logging
from importlib import metadata

TESTED = {"ray": "2.60.0", "deepspeed": "0.19.8", "gcsfs": "2026.10.1"}
"""{distribution: the exact version every shim below was written and tested against}."""


class UntestedVersionError(RuntimeError):
    """A shim for a private API was used with a version of its package it was not written for."""


@functools.cache
def require(package: str) -> None:
    """Fail with a clear message unless the installed `package` is the version its shims were written for."""
    wanted = TESTED[package]
    try:
        installed = metadata.version(package)
    except metadata.PackageNotFoundError:
        installed = "not installed"
    if installed != wanted:
        raise UntestedVersionError(
            f"{package} {installed} is installed, but clasp_dist/compat.py uses {package}'s private internals "
            f"written for {package} {wanted}: install {package}=={wanted}, or check and update those shims "
            f"(tests/test_compat.py) for {installed}"
        )


# --- Ray 2.60.0 -----------------------------------------------------------------------------------------------

RAY_PRIVATE_QUIET_LOGGERS = {
    "ray.data._internal.progress": logging.ERROR,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
"""Ray's private loggers of known noise (Ray Data's progress-bar notice, the token-authentication notice) and the
level that silences them. Logger names only: setting a level imports nothing."""

RAY_TRAIN_SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
"""The file Ray Train's checkpoint manager writes under a run's storage path once it registers a checkpoint
(`ray.train.v2._internal.constants.CHECKPOINT_MANAGER_SNAPSHOT_FILENAME`)."""


def ray_worker_module():
    """`ray._private.worker`, whose `print_worker_logs(data, print_file, ignore_prefix=False)` prints what Ray
    forwards from its worker processes to the driver."""
    require("ray")
    import ray._private.worker as ray_worker

    return ray_worker


def ray_log_deduplicators() -> tuple:
    """Ray's de-duplicators of forwarded stdout and stderr (`ray._private.ray_logging`), each with a
    `deduplicate(batch)` method that runs before printing."""
    require("ray")
    from ray._private import ray_logging

    return ray_logging.stdout_deduplicator, ray_logging.stderr_deduplicator


def ray_logging_module():
    """`ray._private.ray_logging`, whose `RAY_DEDUP_LOGS` switch and de-duplicators the log tests set."""
    require("ray")
    from ray._private import ray_logging

    return ray_logging


def ray_constants_module():
    """`ray._private.ray_constants`: process-type names and `DEFAULT_RUNTIME_ENV_DIR_NAME` (the folder of a
    node's runtime resources, which the simulated cluster's provider gives each fake node for itself)."""
    require("ray")
    from ray._private import ray_constants

    return ray_constants


def session_raylet_pid() -> int:
    """The process id of this driver's Ray session's raylet (`ray._private.worker._global_node`)."""
    constants = ray_constants_module()
    node = ray_worker_module()._global_node
    return node.all_processes[constants.PROCESS_TYPE_RAYLET][0].process.pid


def ray_global_state():
    """`ray._private.state.state`: the GCS client behind `get_max_resources_from_cluster_config()` and
    `get_cluster_config()` (the autoscaler's node types)."""
    require("ray")
    from ray._private import state

    return state.state


def autoscaling_status_raw() -> bytes | None:
    """The autoscaler's last status JSON as Ray's v1 monitor keeps it in the GCS's internal KV store (None when
    none). Ray must be initialised."""
    require("ray")
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    return _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)


def readonly_node_type(node_id: str) -> str:
    """The node type name Ray's read-only provider (a fixed cluster) gives the node `node_id`."""
    require("ray")
    from ray.autoscaler._private.util import format_readonly_node_type

    return format_readonly_node_type(node_id)


def ray_default_system_temp_dir() -> str:
    """Where Ray puts its session folders by default (`ray._common.utils.get_default_system_temp_dir`)."""
    require("ray")
    from ray._common.utils import get_default_system_temp_dir

    return get_default_system_temp_dir()


def create_data_actor_location_tracker() -> None:
    """Create (or get) Ray Data's cluster-wide, detached `ActorLocationTracker` from this process."""
    require("ray")
    from ray.data._internal.execution.node_trackers import get_or_create_actor_location_tracker

    get_or_create_actor_location_tracker()


# --- DeepSpeed 0.19.8 -----------------------------------------------------------------------------------------


def mark_deepspeed_op_incompatible(op: str) -> None:
    """Make DeepSpeed treat the op builder `op` as incompatible, so it never JIT-builds it
    (`deepspeed.ops.__compatible_ops__`, read when the engine starts)."""
    require("deepspeed")
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[op] = False


# --- gcsfs 2026.10.1 ------------------------------------------------------------------------------------------


def gcsfs_core_class():
    """`gcsfs.core.GCSFileSystem` (the plain JSON-API filesystem, without the Storage Control layout lookups of
    `gcsfs.GCSFileSystem`)."""
    require("gcsfs")
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem


def gcsfs_request_with_retries(retries: int):
    """gcsfs's per-request method `_request` re-wrapped to make at most `retries` attempts: its undecorated
    function (`__wrapped__`) under `gcsfs.retry.retry_request(retries=...)`."""
    from gcsfs.retry import retry_request

    return retry_request(retries=retries)(gcsfs_core_class()._request.__wrapped__)
