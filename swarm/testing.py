"""Test doubles shipped with swarm, so users can test their own policies and topologies.

- `MemorySwarm`: a whole swarm in one asyncio loop on the in-memory transport (no Ray).
- `ScriptedBackend`: a backend that answers from a dict and can be told to fail or hang.
"""

from __future__ import annotations

import asyncio
import time

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.client import Answer, new_query, to_answer
from swarm.errors import DeadlineExceeded, NoCapableAgent, PeerUnreachable
from swarm.node import AgentNode, NodeConfig
from swarm.policies import AlwaysAnswer, Policy, SelfAware
from swarm.prompts import scenario_alpha
from swarm.protocol import Member, Result, decode, encode, expect
from swarm.transport.memory import MemoryNetwork


class ScriptedBackend(Backend):
    """Answers `answers[query]` when known, otherwise says the reject phrase. `fail`/`hang` for faults."""

    def __init__(self, answers: dict[str, str] | None = None, delay_s: float = 0.0, logprobs: dict[str, tuple[float, ...]] | None = None) -> None:
        self.answers = answers or {}
        self.logprobs = logprobs or {}  # query -> token logprobs reported for its answer
        self.delay_s = delay_s
        self.fail: bool | BaseException = False
        self.hang = False
        self.calls = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail:
            raise RuntimeError("scripted backend failure")
        if self.hang:
            await asyncio.Event().wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        known = request.query in self.answers
        text = self.answers.get(request.query, "I cannot answer this.") if (known or not request.allow_reject) else request.reject_phrase
        logprobs = self.logprobs.get(request.query, ()) if request.logprobs else ()
        return Generation(text, len(request.query.split()), len(text.split()), self.delay_s, logprobs)


class MemorySwarm:
    """A swarm of AgentNodes on one MemoryNetwork. Entry is the cheapest live agent, as with Ray."""

    def __init__(self, config: NodeConfig = NodeConfig(), max_hops: int = 8, deadline_s: float = 30.0, max_query_chars: int = 32768) -> None:
        self.network = MemoryNetwork()
        self.config, self.max_hops, self.deadline_s, self.max_query_chars = config, max_hops, deadline_s, max_query_chars
        self.nodes: dict[str, AgentNode] = {}

    def node(self, name: str, cost: float, backend: Backend, policy: Policy | None = None, links: list[str] = (), seed: int = 0) -> AgentNode:
        node = AgentNode(Member(name=name, cost=cost, links=list(links)), policy or SelfAware(), backend, self.network.transport(name), self.config, seed=seed)
        self.network.register(node)
        self.nodes[name] = node
        return node

    async def start_all(self, background: bool = True) -> None:
        """Bootstrap: every initial agent knows every other, as `launch` does from a topology."""
        view = [n.membership.self_entry for n in self.nodes.values()]
        for node in self.nodes.values():
            node.membership.merge_all(view, spread=False)
        await asyncio.gather(*(n.start(background=background) for n in self.nodes.values()))

    async def join(self, name: str, cost: float, backend: Backend, seeds: list[str], policy: Policy | None = None, links: list[str] = (), background: bool = True) -> AgentNode:
        node = self.node(name, cost, backend, policy, links, seed=len(self.nodes))
        await node.start(seeds, background=background)
        return node

    def kill(self, name: str) -> None:
        self.network.kill(name)
        node = self.nodes.pop(name)
        node._stopped.set()
        for task in list(node._tasks):
            task.cancel()

    async def leave(self, name: str) -> None:
        await self.nodes[name].leave()
        self.network.kill(name)
        self.nodes.pop(name)

    def entries(self) -> list[str]:
        """Live agents cheapest first, as far as any agent still up knows."""
        known: dict[str, Member] = {}
        for node in self.nodes.values():
            for m in node.membership.view():
                if m.name not in known or known[m.name].incarnation < m.incarnation:
                    known[m.name] = m
        return [m.name for m in sorted(known.values(), key=lambda m: (m.cost, m.name)) if m.state == "alive" and m.name in self.nodes]

    async def ask(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None) -> Answer:
        query = new_query(text, scenario_alpha(scenario, alpha), deadline_s or self.deadline_s, self.max_hops, self.max_query_chars)
        start = time.monotonic()
        for entry in self.entries():
            remaining = query.budget_s - (time.monotonic() - start)
            try:
                # A little grace past the deadline, so the agents' own deadline error (with its trace) wins.
                async with asyncio.timeout(max(0.0, remaining) + 0.5):
                    result = expect(await self.network.deliver(entry, encode(query.model_copy(update={"budget_s": remaining}))), Result)
            except PeerUnreachable:
                continue
            except TimeoutError:
                raise DeadlineExceeded(f"query {query.query_id}: no reply from entry agent {entry} within the deadline", query.query_id) from None
            if result.error_code == "refused":
                continue
            return to_answer(result, time.monotonic() - start, entry)
        raise NoCapableAgent(f"query {query.query_id}: no live entry agent", query.query_id)

    async def stop(self) -> None:
        for node in list(self.nodes.values()):
            await node.stop()


__all__ = ["AlwaysAnswer", "MemoryNetwork", "MemorySwarm", "ScriptedBackend", "decode", "encode"]
