"""Shared fixtures. Ray tests share one real local cluster per test session (starting one costs ~7 s)."""

from __future__ import annotations

import os

import pytest
import ray

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    """A fresh local Ray cluster (never one left running on the machine), torn down at the end."""
    if not ray.is_initialized():
        ray.init(address="local", include_dashboard=False, num_cpus=2, configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def quick_ladder():
    """The testbed's quick ladder, in the cache that 'testbed:quick/<rung>' models resolve to: built
    once per machine (about 5 minutes on 2 cores), then read from the cache."""
    from swarm.testbed.models import build

    return build("quick")
