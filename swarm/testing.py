"""Test doubles and checks shipped with swarm, so users can test their own policies, backends,
transports and topologies.

- `MemorySwarm`: a whole swarm in one asyncio loop on the in-memory transport (no Ray).
- `ScriptedBackend`: a backend that answers from a dict and can be told to fail or hang.
- `check_backend`, `check_policy`, `check_transport`: conformance checks for your own
  implementations of the three seams (`swarm.conformance`).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Iterable
from typing import Self

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.client import Answer
from swarm.conformance import check_backend, check_policy, check_transport
from swarm.entry import EntryClient, QueryLimits
from swarm.errors import QueryError
from swarm.node import AgentNode, NodeConfig
from swarm.policies import AlwaysAnswer, Policy, SelfAware
from swarm.protocol import Member, decode, encode
from swarm.transport.memory import MemoryNetwork


class ScriptedBackend(Backend):
    """Answers `answers[query]` when known, otherwise says the reject phrase. `fail`/`hang` for faults.

    Streaming (a request with `on_text`): the reply goes out word by word, `token_delay_s` apart;
    with `pause` set to an asyncio.Event, it stops after the first word until the event is set
    (so a test can show the first piece arrived before generation ended). `streamed` counts words sent.

    First-token scores (self_aware with decide: logprobs), only when `reject_logprobs` is given:
    `reject_logprobs[query]` is log P(the reply starts with the reject phrase); for a query not in it,
    log 0.1 when the backend knows the answer, log 0.9 when it does not.

    Hidden states for a probe (`assess`), only when `states` is given: every prompt's states are that array
    (a probe then reads the same P on every query, and its decision turns on the bar alone)."""

    def __init__(self, answers: dict[str, str] | None = None, delay_s: float = 0.0, logprobs: dict[str, tuple[float, ...]] | None = None,
                 reject_logprobs: dict[str, float] | None = None, states=None) -> None:
        self.states = states
        self.reads_states = states is not None
        self.answers = {} if answers is None else answers
        self.logprobs = {} if logprobs is None else logprobs  # query -> token logprobs reported for its answer
        self.reject_logprobs = reject_logprobs
        self.scores_first_token = reject_logprobs is not None
        self.delay_s = delay_s
        self.fail: bool | BaseException = False
        self.hang = False
        self.calls = 0
        self.cancelled = 0  # generations stopped part way (the query was cancelled)
        self.finished = 0  # generations that ran to the end
        self.token_delay_s = 0.0
        self.pause: asyncio.Event | None = None
        self.streamed = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.calls += 1
        try:
            generation = await self._generate(request)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return generation

    async def assess(self, request: GenerationRequest, judge) -> Generation:
        if self.states is None:
            return await super().assess(request, judge)
        if not judge(self.states):
            return Generation("", len(request.query.split()), 0, 0.0, finish_reason="reject")
        return await self.generate(request)

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        if self.reject_logprobs is None:
            return await super().reject_logprob(request)
        default = math.log(0.1 if request.query in self.answers else 0.9)
        return self.reject_logprobs.get(request.query, default), max(1, len(request.query.split()))

    async def _generate(self, request: GenerationRequest) -> Generation:
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
        if request.on_text is not None:
            for i, word in enumerate(re.findall(r"\s*\S+", text)):
                request.on_text(word)
                self.streamed += 1
                if i == 0 and self.pause is not None:
                    await self.pause.wait()
                elif self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
        return Generation(text, len(request.query.split()), len(text.split()), self.delay_s, logprobs)


class MemorySwarm:
    """A swarm of AgentNodes on one MemoryNetwork, asked through the same `EntryClient` as a swarm on Ray.
    `async with MemorySwarm(...) as s:` stops every node at the end."""

    def __init__(self, config: NodeConfig = NodeConfig(), max_hops: int = 8, deadline_s: float = 30.0, max_query_chars: int = 32768,
                 network: MemoryNetwork | None = None) -> None:
        self.network = network or MemoryNetwork()
        self.config = config
        self.nodes: dict[str, AgentNode] = {}
        self._joined = 0
        self.client = EntryClient("memory", self.network.transport("(client)"), QueryLimits(deadline_s, max_hops, max_query_chars))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

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
        self.client.learn(view)

    async def join(self, name: str, cost: float, backend: Backend, seeds: list[str], policy: Policy | None = None, links: list[str] = (), background: bool = True) -> AgentNode:
        self._joined += 1
        node = self.node(name, cost, backend, policy, links, seed=1000 + self._joined)  # never a seed another node holds
        await node.start(seeds, background=background)
        self.client.learn([node.membership.self_entry])
        return node

    def kill(self, name: str) -> None:
        self.network.kill(name)
        node = self.nodes.pop(name)
        node._stopped.set()
        for task in list(node._tasks):
            task.cancel()

    async def leave(self, name: str) -> None:
        node = self.nodes[name]
        await node.leave()
        self.network.kill(name)
        self.nodes.pop(name)
        self.client.learn([node.membership.self_entry])

    def entries(self) -> list[str]:
        """Live agents cheapest first, as the entry client knows them."""
        return self.client.entries()

    async def ask(self, text: str, scenario: str | float | None = None, alpha: float | None = None, deadline_s: float | None = None,
                  target_latency_s: float | None = None) -> Answer:
        await self._know_the_swarm()
        return await self.client.ask(text, scenario, alpha, deadline_s, target_latency_s=target_latency_s)

    async def ask_stream(self, text: str, scenario: str | float | None = None, alpha: float | None = None,
                         deadline_s: float | None = None, target_latency_s: float | None = None) -> AsyncIterator[str | Answer]:
        """The answer's text piece by piece as it is generated, then the Answer (`EntryClient.stream`)."""
        await self._know_the_swarm()
        async for item in self.client.ask_stream(text, scenario, alpha, deadline_s, target_latency_s=target_latency_s):
            yield item

    async def ask_many(self, texts: Iterable[str], scenario: str | float | None = None, alpha: float | None = None,
                       deadline_s: float | None = None, concurrency: int = 64, target_latency_s: float | None = None) -> list[Answer | QueryError]:
        await self._know_the_swarm()
        return await self.client.ask_many(texts, scenario, alpha, deadline_s, concurrency, target_latency_s=target_latency_s)

    async def _know_the_swarm(self) -> None:
        """Nodes started by hand (not through start_all or join): ask them for the view, as `attach` does."""
        if not self.client.entries():
            await self.client.refresh(also=sorted(self.nodes))

    async def stop(self) -> None:
        await self.client.close()
        for node in list(self.nodes.values()):
            await node.stop()


__all__ = [
    "AlwaysAnswer", "MemoryNetwork", "MemorySwarm", "ScriptedBackend", "check_backend", "check_policy", "check_transport", "decode",
    "encode",
]
