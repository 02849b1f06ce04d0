"""The conformance checks of swarm.testing, applied to the project's own backends, policies and
transports (the transformers backend's is in test_transformers_backend.py, the OpenAI one's in
test_openai_backend.py), and shown to catch a broken implementation of each seam."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import swarm
from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.backends.replay import ReplayBackend, ReplayTable
from swarm.errors import PeerUnreachable
from swarm.policies import AlwaysAnswer, Ask, Confidence, Policy, Response, SelfAware, Verbalized
from swarm.testing import MemorySwarm, ScriptedBackend, check_backend, check_policy, check_transport
from swarm.topology import parse_topology
from swarm.transport.base import Transport

DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"


def test_scripted_and_replay_backends_conform():
    asyncio.run(check_backend(ScriptedBackend({"What is 2 + 3?": "The answer is: 5"})))
    asyncio.run(check_backend(ReplayBackend(ReplayTable.load(DATA / "arith-replay.jsonl"), "m1")))


@pytest.mark.parametrize("policy", [SelfAware(), SelfAware(decide="logprobs"), AlwaysAnswer(), Confidence(), Verbalized()],
                         ids=["self_aware", "self_aware-logprobs", "always_answer", "confidence", "verbalized"])
def test_every_policy_conforms(policy):
    asyncio.run(check_policy(policy))


def test_the_memory_transport_conforms():
    async def main() -> None:
        async with MemorySwarm() as s:
            s.node("m1", 0.1, ScriptedBackend())
            await s.start_all(background=False)
            await check_transport(s.network.transport("tester"), peer="m1", absent="nobody")

    asyncio.run(main())


def test_the_ray_transport_conforms(ray_cluster):
    from swarm.cluster.connect import namespace_of
    from swarm.cluster.transport import RayTransport

    rows = "  - {name: m1, cost: 0.1, backend: {kind: replay, table: arith-replay.jsonl}}"
    with swarm.launch(parse_topology(f"name: conformance\nagents:\n{rows}\n", base_dir=DATA)):
        asyncio.run(check_transport(RayTransport(namespace_of("conformance")), peer="m1", absent="nobody"))


# -- the checks catch what they name ---------------------------------------------------------------
class NegativeSeconds(ScriptedBackend):
    async def generate(self, request: GenerationRequest) -> Generation:
        g = await super().generate(request)
        return Generation(g.text, g.tokens_in, g.tokens_out, -1.0)


class RejectsWhenItMustAnswer(Policy):
    async def respond(self, ask: Ask, backend: Backend) -> Response:
        await backend.generate(ask.generation(True))
        return Response(True, "I don't know!", 1, 1, 0.0)


class SilentOnUnknownPeers(Transport):
    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        try:
            return await self.inner.send(peer, data, control)
        except PeerUnreachable:
            return b""


def test_the_checks_catch_broken_implementations():
    with pytest.raises(AssertionError, match="seconds must be >= 0"):
        asyncio.run(check_backend(NegativeSeconds()))
    with pytest.raises(AssertionError, match="rejected although it must answer"):
        asyncio.run(check_policy(RejectsWhenItMustAnswer()))

    async def transport() -> None:
        async with MemorySwarm() as s:
            s.node("m1", 0.1, ScriptedBackend())
            await s.start_all(background=False)
            await check_transport(SilentOnUnknownPeers(s.network.transport("tester")), peer="m1", absent="nobody")

    with pytest.raises(AssertionError, match="did not raise PeerUnreachable"):
        asyncio.run(transport())
