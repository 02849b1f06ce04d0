"""Ray transport: each agent is a named, detached async Ray actor holding one AgentNode.

Peers are addressed by name inside the swarm's namespace. A name is turned into an actor
handle once (a control-store lookup, done off the query path and cached) and every message
after that is a direct actor-to-actor call carrying msgpack bytes.

Threads: an async actor runs each concurrency group on its own event loop. The AgentNode is
not thread-safe, so membership traffic arriving on the "control" group is handed to the
node's own loop; the group exists so that a flood of queries (the default group, bounded by
max_concurrency) cannot keep join/leave/gossip/status calls from being accepted.
"""

from __future__ import annotations

import asyncio
import time

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayError

from swarm.build import build_parts, node_config
from swarm.errors import PeerUnreachable
from swarm.logging import configure_logging
from swarm.node import AgentNode, NodeObserver
from swarm.protocol import Member
from swarm.transport.base import Transport

NAMESPACE_PREFIX = "swarm-"


def namespace_of(swarm_name: str) -> str:
    return NAMESPACE_PREFIX + swarm_name


class RayTransport(Transport):
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._handles: dict[str, ray.actor.ActorHandle] = {}

    async def _resolve(self, peer: str) -> ray.actor.ActorHandle:
        handle = self._handles.get(peer)
        if handle is None:
            try:
                handle = await asyncio.to_thread(ray.get_actor, peer, namespace=self.namespace)
            except ValueError:
                raise PeerUnreachable(peer, f"no actor named {peer!r} in namespace {self.namespace!r}") from None
            self._handles[peer] = handle
        return handle

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        handle = await self._resolve(peer)
        method = handle.control if control else handle.handle
        try:
            return await method.remote(data)
        except ActorDiedError as exc:
            self.forget(peer)
            raise PeerUnreachable(peer, f"actor died ({type(exc).__name__})", permanent=True) from None
        except (ActorUnavailableError, RayActorError) as exc:
            raise PeerUnreachable(peer, f"actor unavailable ({type(exc).__name__})", permanent=False) from None
        except RayError as exc:  # the peer's handler itself broke: treat as a sick peer, not a dead one
            raise PeerUnreachable(peer, f"call failed ({type(exc).__name__})", permanent=False) from None

    def forget(self, peer: str) -> None:
        self._handles.pop(peer, None)


class RayMetrics(NodeObserver):
    """The agent's metrics through `ray.util.metrics`, served by Ray's Prometheus endpoint on each
    node (names gain Ray's `ray_` prefix there): queries, decisions, outcomes, latency, path hops."""

    _LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
    _HOPS = (0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 8.5, 16.5)

    def __init__(self, swarm_name: str, agent: str) -> None:
        from ray.util.metrics import Counter, Histogram

        tags = ("swarm", "agent")
        self.tags = {"swarm": swarm_name, "agent": agent}
        self.queries = Counter("swarm_agent_queries", "queries this agent handled (answered, passed on or failed)", tag_keys=tags)
        self.decisions = Counter("swarm_agent_decisions", "this agent's decisions (answer, forced, reject)", tag_keys=(*tags, "decision"))
        self.outcomes = Counter("swarm_agent_outcomes", "queries leaving this agent, by outcome (ok or error code)", tag_keys=(*tags, "outcome"))
        self.latency = Histogram("swarm_agent_latency_s", "time a query spent at this agent and beyond (s)", boundaries=list(self._LATENCY_S), tag_keys=tags)
        self.hops = Histogram("swarm_query_hops", "forwards between agents per query, counted at its entry agent", boundaries=list(self._HOPS), tag_keys=tags)

    def decided(self, decision: str) -> None:
        self.decisions.inc(1, {**self.tags, "decision": decision})

    def query_done(self, seconds: float, outcome: str, entry: bool, hops: int) -> None:
        self.queries.inc(1, self.tags)
        self.outcomes.inc(1, {**self.tags, "outcome": outcome})
        self.latency.observe(seconds, self.tags)
        if entry:
            self.hops.observe(hops, self.tags)


@ray.remote(concurrency_groups={"control": 32})
class AgentActor:
    """One agent. Created by `swarm.launch` or `Swarm.add_agent`; never restarted by Ray (a crashed
    agent is routed around, and a new one joins under a fresh incarnation)."""

    def __init__(self, swarm_name: str, topology_json: str, agent_json: str, initial: list[dict], log: tuple[str | None, str | None]) -> None:
        from swarm.topology import AgentSpec, Topology

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
        return {"topology": self.topology.model_dump_json(), "agent": self.spec_json}

    async def freeze(self, seconds: float) -> None:
        """Test hook: block this agent's event loop, as a stuck process would."""
        time.sleep(seconds)

    async def _on_node_loop(self, coro):
        if self.loop is None or self.loop is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))
