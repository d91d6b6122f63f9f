"""Ray's fake multi-node provider with one disk per simulated node (loaded by the simulated cluster's autoscaler).

A real node unpacks each job's working directory (`runtime_env` `working_dir`) on its own disk. The fake provider
starts every node on this machine with the head's session folder, so they would all share one
`runtime_resources/` folder; and Ray's working_dir plugin unpacks a package with `overwrite=True` on each node
that first needs it. A node launched later would then delete the working directory that a running job driver, or
another node's workers, are in (seen as `FileNotFoundError` from `os.getcwd()` in a resumed Tune driver).
`SeparateDisksProvider` gives each launched node its own `runtime_resources_<n>/` instead, as on a real cluster.
Everything else is Ray's provider unchanged.

This folder (not tests/) is what the cluster's processes get on PYTHONPATH, so that only this module is added.
"""

from __future__ import annotations

import itertools
import threading

from ray._private import ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider

_CREATING = threading.Lock()
"""Nodes may be launched from several threads: one node at a time sees its own folder name."""


class SeparateDisksProvider(FakeMultiNodeProvider):
    def __init__(self, provider_config, cluster_name):
        super().__init__(provider_config, cluster_name)
        self._disks = itertools.count(1)

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        # RayParams reads this module constant when the node is created: set it for this node only
        with _CREATING:
            shared = ray_constants.DEFAULT_RUNTIME_ENV_DIR_NAME
            ray_constants.DEFAULT_RUNTIME_ENV_DIR_NAME = f"{shared}_{next(self._disks)}"
            try:
                super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
            finally:
                ray_constants.DEFAULT_RUNTIME_ENV_DIR_NAME = shared
