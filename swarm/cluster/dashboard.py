"""The dashboard's hands on a swarm, on Ray (`swarm.dashboard.poller.Control`).

Two `Swarm` handles, attached by name inside the gateway's actor: one polls (statuses, and each
agent's spec once, for its backend and model), the other acts, one action at a time, through the
CLI's own code paths (`Swarm.add_agent`, `remove_agent`, `kill_agent`), so that a graceful leave
that drains for half a minute does not stall the view. Both block on Ray, so they run in threads.
"""

from __future__ import annotations

import asyncio

from ray.exceptions import RayError

from swarm.cluster.swarm import Swarm, attach
from swarm.errors import SwarmError
from swarm.protocol import Status
from swarm.topology import AgentSpec

POLL_TIMEOUT_S = 2.0  # an agent that does not answer the status call in this time shows no load this round


class RayControl:
    def __init__(self, swarm_name: str) -> None:
        self.swarm_name = swarm_name
        self._watch: Swarm | None = None
        self._act: Swarm | None = None
        self._acting = asyncio.Lock()
        self._backends: dict[str, tuple[str, str]] = {}

    async def poll(self) -> tuple[dict[str, Status | None], dict[str, tuple[str, str]]]:
        if self._watch is None:
            self._watch = await asyncio.to_thread(attach, self.swarm_name)
        statuses = await asyncio.to_thread(self._watch.statuses, POLL_TIMEOUT_S)
        for name in statuses.keys() - self._backends.keys():
            try:
                spec = await asyncio.to_thread(self._watch.agent_spec, name, POLL_TIMEOUT_S)
            except (RayError, SwarmError):
                continue  # asked again next poll
            self._backends[name] = (spec.backend.kind, str(spec.backend.model or spec.name) if spec.backend.kind == "replay"
                                    else spec.backend.model)
        return statuses, dict(self._backends)

    async def add(self, spec: AgentSpec) -> str:
        async with self._acting:
            s = await self._acting_swarm()
            return await asyncio.to_thread(s.add_agent, spec)

    async def remove(self, name: str, kill: bool) -> None:
        async with self._acting:
            s = await self._acting_swarm()
            await asyncio.to_thread(s.kill_agent if kill else s.remove_agent, name)

    async def _acting_swarm(self) -> Swarm:
        if self._act is None:
            self._act = await asyncio.to_thread(attach, self.swarm_name)
        return self._act

    def close(self) -> None:
        for s in (self._watch, self._act):
            if s is not None:
                s.detach()
