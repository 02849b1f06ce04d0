"""The dashboard's one poll loop: every agent's Status at most once a second, and only while
someone watches (a stream is open, or the state was asked for in the last IDLE_S seconds).
However many browsers watch, the agents are polled once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import structlog

from swarm.dashboard.view import SwarmView
from swarm.protocol import Status
from swarm.topology import AgentSpec

log = structlog.get_logger("swarm.dashboard")
IDLE_S = 30.0


class Control(Protocol):
    """What the dashboard asks of a swarm (swarm.cluster.dashboard implements it on Ray)."""

    async def poll(self) -> tuple[dict[str, Status | None], dict[str, tuple[str, str]]]:
        """Every agent's Status (None: no answer), and each agent's (backend kind, model)."""

    async def add(self, spec: AgentSpec) -> str: ...

    async def remove(self, name: str, kill: bool) -> None: ...


class Poller:
    def __init__(self, control: Control, view: SwarmView, interval_s: float = 1.0) -> None:
        self.control, self.view, self.interval_s = control, view, interval_s
        self._task: asyncio.Task | None = None
        self._watchers = 0
        self._wanted_at = 0.0
        self._polled = asyncio.Condition()

    async def snapshot(self) -> dict[str, Any]:
        """The view now (after a first poll, if none was made yet)."""
        self._want()
        async with self._polled:
            await self._polled.wait_for(lambda: self.view.polls > 0)
        return self.view.snapshot()

    async def watch(self) -> AsyncIterator[dict[str, Any]]:
        """The view after each poll, for as long as the caller iterates."""
        self._watchers += 1
        try:
            seen = -1
            while True:
                self._want()
                async with self._polled:
                    await self._polled.wait_for(lambda: self.view.polls != seen)
                seen = self.view.polls
                yield self.view.snapshot()
        finally:
            self._watchers -= 1

    def _want(self) -> None:
        self._wanted_at = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self._watchers or time.monotonic() - self._wanted_at < IDLE_S:
            began = time.monotonic()
            try:
                statuses, backends = await self.control.poll()
            except Exception as exc:  # noqa: BLE001 - Ray hiccups: the view stays as it was, the next poll retries
                log.warning("dashboard poll failed", swarm=self.view.swarm, error=repr(exc)[:300])
            else:
                self.view.observe(statuses, backends, time.time())
                async with self._polled:
                    self._polled.notify_all()
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))
