"""The agent's process: a named, detached async Ray actor holding one AgentNode.

Threads: an async actor runs each concurrency group on its own event loop. The AgentNode is
not thread-safe, so membership traffic arriving on the "control" group is handed to the
node's own loop; the group exists so that a flood of queries (the default group, bounded by
max_concurrency) cannot keep join/leave/gossip/status calls from being accepted.
"""

from __future__ import annotations

import asyncio
import os
import time

import ray

from swarm.build import build_parts, node_config
from swarm.cluster.connect import namespace_of
from swarm.cluster.metrics import RayMetrics
from swarm.cluster.transport import RayTransport
from swarm.logging import configure_logging, logging_settings
from swarm.node import AgentNode
from swarm.protocol import Member
from swarm.topology import AgentSpec, Topology


@ray.remote(concurrency_groups={"control": 32})
class AgentActor:
    """One agent. Created by `swarm.launch` or `Swarm.add_agent`; never restarted by Ray (a crashed
    agent is routed around, and a new one joins under a fresh incarnation)."""

    def __init__(self, swarm_name: str, topology_json: str, agent_json: str, initial: list[dict], log: tuple[str | None, str | None]) -> None:
        configure_logging(*log)
        self.topology = Topology.model_validate_json(topology_json)
        spec = AgentSpec.model_validate_json(agent_json)
        member, policy, backend = build_parts(spec, self.topology)
        self.node = AgentNode(
            member, policy, backend, RayTransport(namespace_of(swarm_name)), node_config(self.topology),
            initial=[Member.model_validate(m) for m in initial], observer=RayMetrics(swarm_name, spec.name),
        )
        self.spec_json = agent_json
        self.loop: asyncio.AbstractEventLoop | None = None
        self._asked_to_leave = False

    async def start(self, seeds: list[str]) -> float:
        """Load the backend, join through the seeds, start gossip; returns seconds taken."""
        self.loop = asyncio.get_running_loop()
        began = time.monotonic()
        await self.node.start(seeds)
        self._exit_task = asyncio.ensure_future(self._exit_when_stopped())
        return time.monotonic() - began

    async def _exit_when_stopped(self) -> None:
        """An agent that left on its own (its backend died) ends its process; one removed through the
        API is killed by the caller once `leave` has returned."""
        await self.node.stopped()
        if not self._asked_to_leave:
            await asyncio.sleep(0.5)  # let the last replies go out
            ray.actor.exit_actor()

    async def handle(self, data: bytes) -> bytes:
        return await self.node.handle(data)

    async def handle_stream(self, data: bytes):
        """A streamed query (called with num_returns="streaming"): the answer's pieces, then the Result."""
        async for reply in self.node.handle_stream(data):
            yield reply

    @ray.method(concurrency_group="control")
    async def control(self, data: bytes) -> bytes:
        return await self._on_node_loop(self.node.handle(data))

    @ray.method(concurrency_group="control")
    async def leave(self) -> int:
        """Graceful leave: refuse new work, tell peers, drain. Returns queries still in flight (0 when drained)."""
        self._asked_to_leave = True
        await self._on_node_loop(self.node.leave())
        return self.node.counters.in_flight

    @ray.method(concurrency_group="control")
    async def describe(self) -> dict:
        return {"topology": self.topology.model_dump_json(), "agent": self.spec_json, "pid": os.getpid()}

    @ray.method(concurrency_group="control")
    async def answered(self) -> list[str]:
        """Test and benchmark hook: the query ids this agent answered (its last 100,000), to count duplicates."""
        return list(self.node.answered_ids)

    async def freeze(self, seconds: float) -> None:
        """Test hook: block this agent's event loop, as a stuck process would."""
        time.sleep(seconds)

    async def _on_node_loop(self, coro):
        if self.loop is None or self.loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


def create_actor(topo: Topology, spec: AgentSpec, initial: list[dict]) -> ray.actor.ActorHandle:
    """Start agent `spec` of `topo` as a detached actor with the resources the topology gives it."""
    res = topo.resources_for(spec)
    options = dict(
        name=spec.name, namespace=namespace_of(topo.name), lifetime="detached", max_restarts=0,
        num_cpus=res.num_cpus, num_gpus=res.num_gpus, max_concurrency=spec.max_concurrency,
    )
    if res.custom:
        options["resources"] = dict(res.custom)
    if res.memory_mb:
        options["memory"] = res.memory_mb * 1024 * 1024
    return AgentActor.options(**options).remote(topo.name, topo.model_dump_json(), spec.model_dump_json(), initial, logging_settings())
