"""Shared fixtures. Ray tests share one real local cluster per test session (starting one costs ~7 s)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import ray

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

IN_CI = os.environ.get("CI") == "true"
# .ci/run names the venv each pytest run is in; a test that needs another venv's packages skips by design.
VENV = os.environ.get("SWARM_TEST_VENV", "main")


def require(missing: str | None, venv: str = "main") -> None:
    """Skip a test whose optional package is missing (`missing`: what to install, or None when all is
    there). Under CI=true the venv that should hold the package fails instead: CI installs them all,
    so a skip there would hide a gap. A test meant for another venv (`venv`) always skips."""
    if venv != VENV:
        pytest.skip(f"runs in the {venv!r} venv (this is {VENV!r}; see .ci/run)")
    if missing is None:
        return
    if IN_CI:
        pytest.fail(f"CI must have this installed: {missing}", pytrace=False)
    pytest.skip(missing)


def missing_modules(*modules: str, install: str) -> str | None:
    """`install` if any of these modules cannot be found, else None."""
    return install if any(importlib.util.find_spec(m) is None for m in modules) else None


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "needs(*modules, install=..., venv='main'): the test needs these packages "
                                       "(skips without them; fails under CI=true)")


def pytest_runtest_setup(item) -> None:
    for mark in item.iter_markers("needs"):
        require(missing_modules(*mark.args, install=mark.kwargs["install"]), mark.kwargs.get("venv", "main"))


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


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session, config, items) -> None:
    """Build the quick ladder before the first test that needs it: on a fresh machine that takes minutes,
    longer than one test may run (pytest-timeout), and a fixture that times out fails every test after it."""
    if not config.option.collectonly and any("quick_ladder" in getattr(item, "fixturenames", ()) for item in items):
        from swarm.testbed.models import build

        build("quick")


def _ray_address_file() -> str | None:
    from ray._common.utils import get_ray_address_file

    try:
        with open(get_ray_address_file(None)) as f:
            return f.read().strip()
    except OSError:
        return None


def pytest_sessionstart(session) -> None:
    session.config.stash[_ADDRESS_BEFORE] = _ray_address_file()


def pytest_sessionfinish(session, exitstatus) -> None:
    """The suite leaves no `ray_current_cluster` file behind: a later `ray.init()` would wait minutes
    on the stopped cluster it names."""
    left = _ray_address_file()
    if left is not None and left != session.config.stash.get(_ADDRESS_BEFORE, None):
        print(f"\nthe test session left Ray's ray_current_cluster file naming {left}: a test started a head node "
              "without its own RAY_TMPDIR")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_ADDRESS_BEFORE = pytest.StashKey[str | None]()
