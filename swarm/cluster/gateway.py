"""The gateway process: a Starlette app under uvicorn, inside one async Ray actor.

It is pinned to the node of the process that starts it (so `--host 127.0.0.1` means this
machine), takes no CPU reservation, and lives as long as its owner: `swarm serve` keeps it in
the foreground and stops it on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import asdict
from functools import partial
from collections.abc import Callable
from typing import Self

import h11
import ray
import structlog
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from swarm.cluster.dashboard import RayControl
from swarm.cluster.swarm import open_entry
from swarm.entry import EntryClient
from swarm.gateway.app import Observer, build_app
from swarm.gateway.limits import GatewaySettings
from swarm.logging import configure_logging, logging_settings

log = structlog.get_logger("swarm.gateway")


def _head_timed(timeout_s: float) -> type:
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's head. uvicorn times nothing
    before a connection's first response, so a socket that sends nothing, or trickles its headers,
    would hold one of `--max-connections` forever and 256 of them would lock every client out.
    Here a connection whose request head has not fully arrived `timeout_s` after it opened (or
    after its last response) is closed. The body has its own deadline in the app (408)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._await_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            if not self.transport.is_closing():
                self._head_timer = self.loop.call_later(timeout_s, self._head_overdue)

        def _head_overdue(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # still waiting for a request head
                log.info("connection closed: no request head in time", timeout_s=timeout_s)
                self.transport.close()

    return HeadTimedH11Protocol
_LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]


class RayMetricsObserver(Observer):
    """Gateway metrics on Ray's Prometheus endpoint: requests by route and status, latency."""

    def __init__(self, swarm_name: str) -> None:
        from ray.util.metrics import Counter, Histogram

        self.tags = {"swarm": swarm_name}
        self.requests = Counter("swarm_gateway_requests", "HTTP requests by route and status", tag_keys=("swarm", "route", "status"))
        self.latency = Histogram("swarm_gateway_latency_s", "HTTP request latency (s)", boundaries=_LATENCY_BOUNDS,
                                 tag_keys=("swarm", "route"))

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.inc(1, {**self.tags, "route": route, "status": str(status)})
        self.latency.observe(seconds, {**self.tags, "route": route})


@ray.remote(num_cpus=0)
class GatewayActor:
    def __init__(self, swarm_name: str, settings: dict, log_settings: tuple[str | None, str | None]) -> None:
        configure_logging(*log_settings)
        self.swarm_name = swarm_name
        self.settings = GatewaySettings(**{**settings, "api_keys": (), "key_digests": tuple(settings["key_digests"])})
        self.server = None
        self.task: asyncio.Future | None = None
        self.entry: EntryClient | None = None
        self.control: RayControl | None = None

    async def start(self) -> str:
        """Bind, start serving, and return the base URL (with the port actually bound)."""
        import uvicorn

        s = self.settings
        self.entry = await open_entry(self.swarm_name)
        more = None
        if s.dashboard:
            from swarm.dashboard.routes import dashboard_routes

            self.control = RayControl(self.swarm_name)
            more = partial(dashboard_routes, self.control, self.swarm_name, s)
        app = _answered_once(build_app(self.entry, s, RayMetricsObserver(self.swarm_name), more))
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.host, s.port))
        port = sock.getsockname()[1]
        # limit_concurrency: past that many open connections (or requests at once) uvicorn answers 503 itself;
        # a connection that does not send a whole request head in time is closed, so idle sockets cannot hold them all.
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5,
                                backlog=2048, timeout_keep_alive=30, limit_concurrency=s.max_connections,
                                http=_head_timed(s.body_timeout_s))
        self.server = uvicorn.Server(config)
        self.task = asyncio.ensure_future(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.02)
        host = f"[{s.host}]" if ":" in s.host else s.host
        log.info("gateway up", swarm=self.swarm_name, url=f"http://{host}:{port}", auth=bool(s.api_keys))
        return f"http://{host}:{port}"

    async def wait(self) -> None:
        """Return when the HTTP server stops."""
        if self.task is not None:
            await asyncio.shield(self.task)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            await self.task
        if self.entry is not None:
            await self.entry.close()
        if self.control is not None:
            self.control.close()


def _answered_once(app: Callable) -> Callable:
    """The app, minus one race in uvicorn's h11 server: when a request turns out malformed at the
    HTTP level (a broken chunk) after the app has started on it, uvicorn answers 400 and closes, and
    the app's own response then raises LocalProtocolError (which would be logged as our fault).
    That response is dropped: the client already has its 400."""

    async def guarded(scope, receive, send) -> None:
        async def send_once(message) -> None:
            try:
                await send(message)
            except h11.LocalProtocolError:
                log.info("response dropped: the HTTP server already refused this request", path=scope.get("path"))

        await app(scope, receive, send_once)

    return guarded


class Gateway:
    """A running gateway: its URL, and `stop()`."""

    def __init__(self, url: str, actor: ray.actor.ActorHandle) -> None:
        self.url, self.actor = url, actor
        self._done: ray.ObjectRef | None = None

    @property
    def base_url(self) -> str:
        """What to give the openai client as base_url."""
        return self.url + "/v1"

    def wait(self, timeout_s: float) -> bool:
        """True once the HTTP server has stopped; waits at most `timeout_s`."""
        if self._done is None:
            self._done = self.actor.wait.remote()
        return bool(ray.wait([self._done], timeout=timeout_s)[0])

    def stop(self, timeout_s: float = 15) -> None:
        try:
            ray.get(self.actor.stop.remote(), timeout=timeout_s)
        finally:
            ray.kill(self.actor)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(swarm_name: str, settings: GatewaySettings | None = None) -> Gateway:
    """Start a gateway for a running swarm on this machine's Ray node (Ray must be initialised,
    e.g. by `swarm.launch` or `swarm.attach`). Returns once it accepts connections."""
    from swarm.errors import SwarmError

    settings = settings or GatewaySettings()
    settings.check()
    if not ray.is_initialized():
        raise SwarmError("connect to Ray first (swarm.launch or swarm.attach)")
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # Ray keeps actor arguments in its control store: the actor gets the keys' digests, never the keys.
    actor = GatewayActor.options(scheduling_strategy=here).remote(swarm_name, asdict(settings.sealed()), logging_settings())
    try:
        url = ray.get(actor.start.remote())
    except ray.exceptions.RayTaskError as exc:
        ray.kill(actor)
        cause = getattr(exc, "cause", None) or exc
        raise SwarmError(f"the gateway did not start: {type(cause).__name__}: {str(cause).splitlines()[0][:300]}") from None
    return Gateway(url, actor)
