"""Fixtures of the Ray Train + DeepSpeed end-to-end tests: one trained `tiny` run shared by the tests that need one."""

from __future__ import annotations

import pytest

from tests.helpers import run_cfg


@pytest.fixture(scope="session")
def tiny_run(ray_session, tiny_root, tmp_path_factory):
    """One complete 2-epoch training run on `tiny` (shared by the tests that need a trained run)."""
    from clasp_dist.training.driver import run_training

    return run_training(run_cfg(tmp_path_factory.mktemp("tiny_run"), tiny_root))
