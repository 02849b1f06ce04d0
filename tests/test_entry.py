"""One entry client behind every face: the same scripted faults at the cheapest entry agent (dead,
refusing because it leaves, wedged) give the same outcome through `Swarm.ask` (sync), `Swarm.ask_async`,
the HTTP gateway's app, and `MemorySwarm.ask`.

The faults are scripted at the Transport seam, under the real entry client; the agents behind it
are real (Ray actors on a local cluster, or AgentNodes on the memory network)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import swarm
from swarm.entry import GRACE_S, EntryClient
from swarm.errors import PeerUnreachable, QueryError
from swarm.policies import AlwaysAnswer
from swarm.protocol import Query, Result, decode, encode
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.topology import parse_topology
from swarm.transport.base import Transport

DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"
QUESTION = "What is 17 + 25?"
AGENTS = {"m1": 0.1, "m2": 0.3, "m3": 0.5}
DEADLINE_S = 1.0
Outcome = tuple[str, str]  # ("answer", entry agent) or ("error", error code)


class ScriptedFaults(Transport):
    """Queries to a scripted agent meet its fault; everything else goes through."""

    def __init__(self, inner: Transport, faults: dict[str, str]) -> None:
        self.inner, self.faults = inner, faults

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        fault = self.faults.get(peer)
        if fault == "dead":
            raise PeerUnreachable(peer, "scripted: dead")
        if fault and not control:
            msg_id, query = decode(data)
            assert isinstance(query, Query)
            if fault == "refused":
                return encode(Result(query_id=query.query_id, ok=False, agent=peer, error_code="refused", error="leaving"), msg_id)
            await asyncio.Event().wait()  # wedged: accepts the query and never replies
        return await self.inner.send(peer, data, control)

    def forget(self, peer: str) -> None:
        self.inner.forget(peer)

    # The blocking side of the Ray transport, which the sync face of Swarm drives.
    def submit(self, peer: str, data: bytes):
        import ray

        fault = self.faults.get(peer)
        if fault == "dead":
            return PeerUnreachable(peer, "scripted: dead")
        if fault == "refused":
            _, query = decode(data)
            return ray.put(encode(Result(query_id=query.query_id, ok=False, agent=peer, error_code="refused", error="leaving")))
        if fault == "wedged":
            return _never.remote()
        return self.inner.submit(peer, data)

    def reply(self, ref, peer: str):
        return self.inner.reply(ref, peer)


def _sleep_long() -> bytes:
    time.sleep(DEADLINE_S + GRACE_S + 30)
    return b""


class _Never:
    """A reply that does not come in time: a Ray task asleep past the deadline (no CPU reserved)."""

    def remote(self):
        import sys

        import ray
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
        return ray.remote(num_cpus=0)(_sleep_long).remote()


_never = _Never()


SCENARIOS: dict[str, tuple[dict[str, str], Outcome]] = {
    "dead entry": ({"m1": "dead"}, ("answer", "m2")),
    "refusing entry": ({"m1": "refused"}, ("answer", "m2")),
    "dead and refusing": ({"m1": "dead", "m2": "refused"}, ("answer", "m3")),
    "wedged entry": ({"m1": "wedged"}, ("error", "deadline_exceeded")),
    "no entry left": ({"m1": "dead", "m2": "refused", "m3": "dead"}, ("error", "no_capable_agent")),
}


def outcome_of(call: Callable[[], Awaitable[swarm.Answer]]) -> Callable[[], Awaitable[Outcome]]:
    async def run() -> Outcome:
        try:
            return "answer", (await call()).entry
        except QueryError as exc:
            return "error", exc.code
    return run


def gateway_face(client: EntryClient) -> Callable[[], Awaitable[Outcome]]:
    from swarm.gateway import GatewaySettings
    from swarm.gateway.app import build_app

    app = build_app(client, GatewaySettings())

    async def run() -> Outcome:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:  # keyless: loopback Host only
            body = {"model": client.swarm, "messages": [{"role": "user", "content": QUESTION}], "deadline_s": DEADLINE_S}
            r = await http.post("/v1/chat/completions", json=body, timeout=30)
        if r.status_code == 200:
            return "answer", r.json()["swarm"]["entry"]
        return "error", r.json()["error"]["code"]
    return run


async def scripted(client: EntryClient, faults: dict[str, str]) -> EntryClient:
    """A new entry client beside `client` (same swarm, transport, limits), with the faults scripted
    under it and the view the agents report; it refreshes nothing mid-scenario."""
    fresh = EntryClient(client.swarm, ScriptedFaults(client.transport, faults), client.limits)
    assert await fresh.refresh(also=sorted(AGENTS))
    assert fresh.entries() == list(AGENTS)
    fresh._refreshed_at = time.monotonic() + 3600
    return fresh


async def check(face: Callable[[], Awaitable[Outcome]], expected: Outcome) -> None:
    began = time.monotonic()
    assert await face() == expected
    if expected == ("error", "deadline_exceeded"):
        assert DEADLINE_S <= time.monotonic() - began < DEADLINE_S + GRACE_S + 2.0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_in_memory_face(scenario):
    faults, expected = SCENARIOS[scenario]

    async def main() -> None:
        async with MemorySwarm(deadline_s=DEADLINE_S) as s:
            for name, cost in AGENTS.items():
                s.node(name, cost, ScriptedBackend({QUESTION: f"The answer is: {name}"}), AlwaysAnswer())
            await s.start_all(background=False)
            s.client = await scripted(s.client, faults)
            await check(outcome_of(lambda: s.ask(QUESTION)), expected)

    asyncio.run(main())


@pytest.fixture(scope="module")
def ray_swarm(ray_cluster):
    rows = "\n".join(f"  - {{name: {n}, cost: {c}, backend: {{kind: replay, table: arith-replay.jsonl}}, policy: {{kind: always_answer}}}}"
                     for n, c in AGENTS.items())
    topology = parse_topology(f"name: entry-faces\ndefaults: {{deadline_s: {DEADLINE_S}}}\nagents:\n{rows}\n", base_dir=DATA)
    with swarm.launch(topology) as s:
        yield s


async def on_scripted(s: swarm.Swarm, faults: dict[str, str], scenario: Awaitable[None]) -> None:
    """Run the scenario with the swarm handle asking through a scripted client, then restore its own."""
    own = s._client
    s._client = await scripted(own, faults)
    try:
        await scenario
    finally:
        s._client = own


@pytest.mark.ray
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sync_face(ray_swarm, scenario):
    faults, expected = SCENARIOS[scenario]
    ask = outcome_of(lambda: asyncio.to_thread(ray_swarm.ask, QUESTION))  # the blocking call, off this test's loop
    asyncio.run(on_scripted(ray_swarm, faults, check(ask, expected)))


@pytest.mark.ray
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_async_face(ray_swarm, scenario):
    faults, expected = SCENARIOS[scenario]
    asyncio.run(on_scripted(ray_swarm, faults, check(outcome_of(lambda: ray_swarm.ask_async(QUESTION)), expected)))


@pytest.mark.ray
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_gateway_face(ray_swarm, scenario):
    from swarm.cluster.swarm import open_entry

    faults, expected = SCENARIOS[scenario]

    async def main() -> None:
        client = await scripted(await open_entry(ray_swarm.name), faults)
        await check(gateway_face(client), expected)

    asyncio.run(main())


def test_the_sync_face_keeps_no_thread_of_its_own_after_shutdown(ray_cluster):
    import threading

    rows = "  - {name: solo, cost: 0.1, backend: {kind: replay, table: arith-replay.jsonl}, policy: {kind: always_answer}}"
    with swarm.launch(parse_topology(f"name: entry-threads\nagents:\n{rows}\n", base_dir=DATA)) as s:
        assert s.ask(QUESTION).agent == "solo"
    assert not [t for t in threading.enumerate() if t.name == "swarm-entry-threads"]
    with pytest.raises(swarm.SwarmError, match="closed"):
        s.ask(QUESTION)
