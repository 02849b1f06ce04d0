"""Connecting to Ray: which cluster, whether it listens, and the names of a swarm's actors."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ray
import structlog

from swarm.errors import SwarmError

log = structlog.get_logger("swarm.cluster")
NAMESPACE_PREFIX = "swarm-"


def namespace_of(swarm_name: str) -> str:
    return NAMESPACE_PREFIX + swarm_name


def actor_names(namespace: str) -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == namespace}


def connect(address: str | None, namespace: str | None = None, log_to_driver: bool = True) -> None:
    """Join (or start) the Ray cluster `address` names, unless this process is connected already."""
    if ray.is_initialized():
        return
    address = _resolve(address)
    _probe(address)
    # A new local cluster gets Ray's default token authentication; Ray announces that default on every
    # start, a banner our users cannot act on (RAY_AUTH_MODE=disabled would opt out).
    banner = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = banner.level
    banner.setLevel(logging.ERROR if address == "local" else level)
    try:
        ray.init(address=address, namespace=namespace, include_dashboard=False, log_to_driver=log_to_driver, configure_logging=False)
    except ConnectionError as exc:
        raise SwarmError(f"Ray is not reachable at {address!r}: {str(exc).splitlines()[0]}") from None
    finally:
        banner.setLevel(level)


def disconnect() -> None:
    """Leave Ray (a local cluster this process started stops with it)."""
    ray.shutdown()


@contextmanager
def private_ray(address: str | None) -> Iterator[None]:
    """Ray for one experiment: with no `address` and no Ray running in this process, a private
    local cluster (never one that someone else started on this machine), shut down at the end."""
    own = address is None and not ray.is_initialized()
    if own:
        connect("local", log_to_driver=False)
    try:
        yield
    finally:
        if own:
            ray.shutdown()


def run_tasks(fn: Callable[[Any], Any], args: list[Any], num_cpus: list[float], address: str) -> list[Any]:
    """`fn(arg)` for every arg as Ray tasks on the cluster at `address`, each with its CPUs; their results in order."""
    connect(address)
    remote = ray.remote(fn)
    return ray.get([remote.options(num_cpus=c).remote(a) for a, c in zip(args, num_cpus, strict=True)])


def _resolve(address: str | None) -> str | None:
    """The address to hand to ray.init. None and "auto" mean the cluster that RAY_ADDRESS or Ray's
    `ray_current_cluster` file names; that file outlives a cluster stopped without `ray stop`, and
    ray.init would then retry the dead address for minutes. So a named cluster that does not
    listen is, for None, ignored (a fresh local cluster starts) and, for "auto", an error."""
    if address not in (None, "auto"):
        return address
    named = _named_cluster()
    if named is None:
        if address is None:
            return "local"
        raise SwarmError("no Ray cluster is running on this machine; start one with `ray start --head` "
                         "(or `swarm launch`, which starts one)")
    if _listening(named):
        return named
    by = "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "Ray's ray_current_cluster file"
    if address is None and not os.environ.get("RAY_ADDRESS"):
        log.warning("stale Ray address ignored: a fresh local cluster starts", stale=named)
        return "local"
    raise SwarmError(f"no Ray cluster listens at {named} (named by {by}; a cluster stopped without `ray stop` "
                     "leaves it behind): start one with `ray start --head`, or run `ray stop`")


def running_cluster() -> str | None:
    """The address of the Ray cluster that RAY_ADDRESS or Ray's address file names, if one listens there."""
    named = _named_cluster()
    return named if named is not None and _listening(named) else None


def _named_cluster() -> str | None:
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    from ray._private.utils import read_ray_address

    return read_ray_address() or None


def _listening(address: str, timeout_s: float = 2.0) -> bool:
    return _unreachable(address, timeout_s) is None


def _unreachable(address: str, timeout_s: float) -> str | None:
    """Why nothing answers a TCP connection at host:port (or ray://host:port), or None if something does."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return "not of the form host:port"
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _probe(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, when an explicit host:port has nothing listening
    (ray.init would keep retrying the connection for a long time)."""
    if not address or address in ("auto", "local"):
        return
    why = _unreachable(address, timeout_s)
    if why == "not of the form host:port":
        raise SwarmError(f"Ray address {address!r} is not of the form host:port, ray://host:port, 'auto' or 'local'")
    if why is not None:
        raise SwarmError(f"Ray is not reachable at {address!r}: {why}")
