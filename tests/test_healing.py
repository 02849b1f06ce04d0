"""Membership that heals and execution that happens once, on the in-memory transport (issue 15).

Each test names a fault the runtime used not to survive: a partition that split the swarm for
good, overload that looked like death, a forged incarnation that evicted an agent, a client that
blacklisted an entry after one failure, queries executed more than once or answered with another
query's reply, a batch lost to one bad entry, membership tables that only grew, and agents of
the previous protocol minor version. The faults are the protocol's, so the real AgentNode runs on
MemoryNetwork; the ones that are Ray's are in tests/test_ray.py.
"""

from __future__ import annotations

import asyncio

import msgpack

from swarm.client import Answer, new_query
from swarm.entry import EntryClient, QueryLimits
from swarm.errors import PeerUnreachable, QueryError
from swarm.membership import Membership
from swarm.node import NodeConfig
from swarm.protocol import (
    MAX_INCARNATION, Cancel, Gossip, Member, Ping, Pong, Query, Result, Status, StatusRequest, View, decode, encode, expect,
)
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.transport.base import Transport
from swarm.transport.memory import MemoryNetwork
from test_node import run, wait_until

FAST = NodeConfig(gossip_interval_s=0.02, ping_interval_s=0.02, ping_timeout_s=0.1, suspect_timeout_s=0.2, drain_timeout_s=2.0)


def states(swarm: MemorySwarm, observer: str) -> dict[str, str]:
    return {m.name: m.state for m in swarm.nodes[observer].membership.view()}


def four(config: NodeConfig = FAST, **kwargs) -> MemorySwarm:
    swarm = MemorySwarm(config, **kwargs)
    for i in range(4):
        swarm.node(f"a{i}", 0.1 + 0.2 * i, ScriptedBackend({"q": f"a{i}: q"}), seed=i)
    return swarm


# -- partitions ---------------------------------------------------------------------------------


def test_a_healed_partition_refutes_its_obituaries_and_the_client_readmits() -> None:
    async def scenario() -> None:
        async with four() as swarm:
            await swarm.start_all()
            swarm.network.partition({"a0", "a1"}, {"a2", "a3"})
            assert await wait_until(lambda: states(swarm, "a0")["a2"] == "dead" and states(swarm, "a3")["a1"] == "dead", 5.0)
            await swarm.client.refresh(first=["a0"])  # the client takes a0's view: a2 and a3 dead
            assert swarm.entries() == ["a0", "a1"]
            await asyncio.sleep(0.5)
            swarm.network.heal()
            everyone_alive = lambda: all(set(states(swarm, n).values()) == {"alive"} for n in swarm.nodes)  # noqa: E731
            assert await wait_until(everyone_alive, 10.0), {n: states(swarm, n) for n in swarm.nodes}
            await swarm.client.refresh(first=["a0"])
            assert swarm.entries() == ["a0", "a1", "a2", "a3"]

    run(scenario, timeout=20)


def test_one_lost_link_does_not_make_a_peer_a_suspect() -> None:
    """SWIM's indirect probe: a0 cannot reach a1, but a2 and a3 can, so a1 stays alive for everyone."""
    async def scenario() -> None:
        async with four() as swarm:
            await swarm.start_all()
            swarm.network.cut("a0", "a1")
            await asyncio.sleep(1.5)  # ~75 ping rounds each, about 19 of a0's aimed at a1
            for n in swarm.nodes:
                assert set(states(swarm, n).values()) == {"alive"}, (n, states(swarm, n))

    run(scenario, timeout=10)


# -- overload ----------------------------------------------------------------------------------


def test_an_overloaded_agent_is_not_declared_dead() -> None:
    """b handles 2 queries at a time, each for 0.5 s, and 12 are queued: its pings (the control lane)
    still answer, so nobody judges it dead and nothing is executed twice elsewhere."""
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend({f"q{i}": f"b{i}" for i in range(12)}, delay_s=0.5))
            swarm.node("c", 0.9, ScriptedBackend({f"q{i}": f"c{i}" for i in range(12)}))
            swarm.network.limit("b", 2)
            await swarm.start_all()
            answers = await swarm.ask_many([f"q{i}" for i in range(12)], deadline_s=10)
            assert all(isinstance(x, Answer) and x.agent == "b" for x in answers), [getattr(x, "agent", x) for x in answers]
            assert states(swarm, "a")["b"] == "alive" and states(swarm, "c")["b"] == "alive"
            assert swarm.nodes["c"].backend.calls == 0

    run(scenario, timeout=20)


# -- bounded fields -----------------------------------------------------------------------------


def test_a_forged_incarnation_past_the_bound_is_refused_and_evicts_nobody() -> None:
    async def scenario() -> None:
        async with four() as swarm:
            await swarm.start_all(background=False)
            forged = {"v": [1, 2], "type": "gossip", "id": "", "body": {"digest": "", "updates": [
                {"name": "a1", "cost": 0.3, "state": "dead", "incarnation": 2**64 - 1}]}}
            _, reply = decode(await swarm.network.deliver("a0", msgpack.packb(forged)))
            assert reply.code == "invalid_body" and "incarnation" in reply.message
            assert states(swarm, "a0")["a1"] == "alive"
            # The largest legal rumour: a1 refutes at the bound, and every reply of it still encodes.
            rumour = Gossip(digest="", updates=[Member(name="a1", cost=0.3, state="suspect", incarnation=MAX_INCARNATION)])
            await swarm.network.deliver("a1", encode(rumour))
            assert swarm.nodes["a1"].membership.self_entry.incarnation == MAX_INCARNATION
            pong = expect(await swarm.network.deliver("a1", encode(Ping(sender="a0"))), Pong)
            assert pong.incarnation == MAX_INCARNATION
            expect(await swarm.network.deliver("a1", encode(Gossip(digest="", full=True))), View)

    run(scenario)


# -- the client's view ------------------------------------------------------------------------


class _FlakyOnce(Transport):
    """The memory transport, except that the first query sent to `flaky` fails as if the actor died."""

    def __init__(self, network: MemoryNetwork, flaky: str) -> None:
        self.inner, self.flaky, self.failed = network.transport("(client)"), flaky, False

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        if peer == self.flaky and not control and not self.failed:
            self.failed = True
            raise PeerUnreachable(peer, "actor died (ActorDiedError)", permanent=True)
        return await self.inner.send(peer, data, control)


def test_one_failure_sets_an_entry_aside_until_a_later_view_shows_it_alive() -> None:
    async def scenario() -> None:
        async with four() as swarm:
            await swarm.start_all(background=False)
            client = EntryClient("memory", _FlakyOnce(swarm.network, "a0"), QueryLimits(5.0, 8, 1000))
            await client.refresh(also=["a1"])
            answer = await client.ask("q")
            assert answer.entry == "a1"  # a0 failed once: the query went on to the next entry
            assert "a0" not in client.entries()
            await client.refresh()  # a0's peers still hold it alive: it is back
            assert client.entries()[0] == "a0" and client.set_aside() == []
            assert (await client.ask("q")).entry == "a0"
            await client.close()

    run(scenario)


# -- at most one execution per query id and agent --------------------------------------------------


def test_a_query_id_is_executed_once_per_agent_however_often_it_arrives() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend({"q": "a: q"}, delay_s=0.2))
            await swarm.start_all(background=False)
            q = encode(new_query("q", 0.5, 5.0, 8, 1000))
            first, second = await asyncio.gather(swarm.network.deliver("a", q), swarm.network.deliver("a", q))
            late = await swarm.network.deliver("a", q)  # after it finished: remembered, not run again
            results = [expect(r, Result) for r in (first, second, late)]
            assert [r.text for r in results] == ["a: q"] * 3
            assert sorted(r.duplicate for r in results) == [False, True, True]
            assert swarm.nodes["a"].backend.calls == 1 and swarm.nodes["a"].counters.duplicates == 2

    run(scenario)


def test_a_query_that_comes_back_to_an_agent_is_refused_not_run_again() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend({"q": "a: q"}))
            await swarm.start_all(background=False)
            looped = new_query("q", 0.5, 5.0, 8, 1000).model_copy(update={"visited": ["b", "a", "c"], "sender": "c"})
            reply = expect(await swarm.network.deliver("a", encode(looped)), Result)
            assert not reply.ok and reply.error_code == "refused" and reply.trace[0].detail == "already visited"
            assert swarm.nodes["a"].backend.calls == 0

    run(scenario)


class _Misdirecting:
    """A peer that answers every query with a Result for another query id."""

    name = "liar"

    async def handle(self, data: bytes) -> bytes:
        _, body = decode(data)
        if isinstance(body, Query):
            return encode(Result(query_id="someone-else", ok=True, text="not yours", agent="liar"))
        return encode(Pong(name="liar", incarnation=0))


def test_a_reply_for_another_query_is_never_taken_as_the_answer() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("c", 0.9, ScriptedBackend({"q": "c: q"}))
            await swarm.start_all(background=False)
            swarm.network.register(_Misdirecting())
            for node in swarm.nodes.values():
                node.membership.merge(Member(name="liar", cost=0.5))
            answer = await swarm.ask("q")
            assert answer.agent == "c" and answer.text == "c: q"
            assert ("liar", "error") in [(h.agent, h.decision) for h in answer.trace]
            assert "mismatched_reply" in next(h.detail for h in answer.trace if h.agent == "liar")
            # and a client never takes an entry's reply for another query as its answer
            swarm.client.learn([Member(name="liar", cost=0.01)])
            assert (await swarm.ask("q")).text == "c: q"

    run(scenario)


def test_abandoned_work_is_cancelled_along_the_path() -> None:
    """On Ray a remote call runs on when its caller stops waiting (cancel_abandoned=False here): the
    client goes away, tells its entry a, a tells b, b tells c, and c's generation stops."""
    async def scenario() -> None:
        async with MemorySwarm(network=MemoryNetwork(cancel_abandoned=False)) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend())
            swarm.node("c", 0.9, ScriptedBackend({"q": "c: q"}, delay_s=5.0))
            await swarm.start_all(background=False)
            asking = asyncio.ensure_future(swarm.ask("q", deadline_s=10))
            c = swarm.nodes["c"]
            assert await wait_until(lambda: c.backend.calls == 1, 2.0)
            asking.cancel()
            assert await wait_until(lambda: c.backend.cancelled == 1, 2.0)
            assert c.backend.finished == 0 and c.counters.in_flight == 0
            assert [swarm.nodes[n].counters.cancelled for n in "abc"] == [1, 1, 1]
            status = expect(await swarm.network.deliver("c", encode(StatusRequest())), Status)
            assert status.cancelled == 1

    run(scenario, timeout=10)


def test_a_cancel_does_not_stop_work_another_copy_still_waits_for() -> None:
    async def scenario() -> None:
        async with MemorySwarm(network=MemoryNetwork(cancel_abandoned=False)) as swarm:
            swarm.node("a", 0.1, ScriptedBackend({"q": "a: q"}, delay_s=0.3))
            await swarm.start_all(background=False)
            q = new_query("q", 0.5, 5.0, 8, 1000)
            from_b = asyncio.ensure_future(swarm.network.deliver("a", encode(q.model_copy(update={"sender": "b"}))))
            await asyncio.sleep(0.05)
            from_client = asyncio.ensure_future(swarm.network.deliver("a", encode(q)))
            await asyncio.sleep(0.05)
            await swarm.network.deliver("a", encode(Cancel(query_id=q.query_id, sender="b")))
            assert expect(await from_client, Result).text == "a: q"
            assert swarm.nodes["a"].counters.cancelled == 0 and swarm.nodes["a"].backend.calls == 1
            from_b.cancel()

    run(scenario)


# -- batches ----------------------------------------------------------------------------------


class _Garbled:
    """An entry that answers every query with an error reply."""

    name = "bad"

    async def handle(self, data: bytes) -> bytes:
        return b"\xc1 not msgpack"


def test_ask_many_never_drops_a_batch_for_one_bad_entry() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.5, ScriptedBackend({f"q{i}": f"a{i}" for i in range(10)}))
            await swarm.start_all(background=False)
            swarm.network.register(_Garbled())
            swarm.client.learn([Member(name="bad", cost=0.01)])
            outcomes = await swarm.ask_many([f"q{i}" for i in range(10)])
            assert len(outcomes) == 10 and all(isinstance(o, Answer) and o.agent == "a" for o in outcomes)

    run(scenario)


# -- membership that is pruned and bounded ---------------------------------------------------------


def test_gone_members_are_forgotten_and_the_map_is_bounded() -> None:
    clock = [100.0]
    mem = Membership(Member(name="me", cost=0.5), clock=lambda: clock[0], max_members=4)
    mem.merge_all([Member(name="d", cost=0.1, state="dead"), Member(name="l", cost=0.2, state="left"), Member(name="x", cost=0.3)])
    assert mem.merge(Member(name="spam", cost=0.9)) is False and mem.refused == 1  # full
    clock[0] += 59
    assert mem.forget_gone(60) == []
    clock[0] += 1
    assert sorted(mem.forget_gone(60)) == ["d", "l"] and sorted(mem.members) == ["me", "x"]
    assert mem.merge(Member(name="spam", cost=0.9)) is True


def test_forgetting_gone_members_keeps_views_in_agreement() -> None:
    """Agents that dropped a dead member at different times still have equal digests."""
    a = Membership(Member(name="a", cost=0.1))
    b = Membership(Member(name="b", cost=0.2))
    for mem in (a, b):
        mem.merge_all([Member(name="a", cost=0.1), Member(name="b", cost=0.2), Member(name="x", cost=0.3, state="dead")], spread=False)
    a.forget_gone(0)
    assert "x" not in a.members and "x" in b.members and a.digest() == b.digest()


# -- the previous minor version ---------------------------------------------------------------


class _OldAgent:
    """A real AgentNode behind a 1.1 codec: it does not know ping_req, cancel or the 1.2 fields, and
    stamps its replies 1.1. Stands in for an agent not yet upgraded during a rolling upgrade."""

    NEW_TYPES = {"ping_req", "cancel"}
    NEW_FIELDS = {"duplicate", "duplicates", "cancelled"}

    def __init__(self, node) -> None:
        self.node, self.name = node, node.name

    async def handle(self, data: bytes) -> bytes:
        envelope = msgpack.unpackb(data)
        if envelope["type"] in self.NEW_TYPES:
            return msgpack.packb({"v": [1, 1], "type": "error", "id": "", "body": {"code": "unknown_type", "message": "1.1"}})
        envelope["v"] = [1, 1]
        reply = msgpack.unpackb(await self.node.handle(msgpack.packb(envelope)))
        reply["v"] = [1, 1]
        reply["body"] = {k: v for k, v in reply["body"].items() if k not in self.NEW_FIELDS}
        return msgpack.packb(reply)


def test_agents_of_the_previous_minor_version_interoperate() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            old = swarm.node("b", 0.5, ScriptedBackend({"medium": "b: medium"}))
            swarm.node("c", 0.9, ScriptedBackend({"medium": "c: medium", "hard": "c: hard"}))
            swarm.network.register(_OldAgent(old))
            await swarm.start_all()
            assert (await swarm.ask("medium")).agent == "b"
            assert (await swarm.ask("hard")).path == ["a", "b", "c"]
            swarm.network.cut("a", "b")  # a's indirect probes of b go to c, which is new; b's of a to c too
            await asyncio.sleep(1.0)
            for n in swarm.nodes:
                assert set(states(swarm, n).values()) == {"alive"}, (n, states(swarm, n))
            swarm.network.heal()
            # a 1.2 cancel to the old agent gets an error reply, and nothing breaks
            outcome = await asyncio.gather(swarm.ask("hard", deadline_s=0.01), return_exceptions=True)
            assert isinstance(outcome[0], (Answer, QueryError))
            assert (await swarm.ask("hard")).agent == "c"

    run(scenario, timeout=10)


# -- local health (Lifeguard) --------------------------------------------------------------------


def test_a_slow_agent_stretches_its_own_timeouts_before_accusing_others() -> None:
    async def scenario() -> None:
        async with four(FAST) as swarm:
            await swarm.start_all(background=False)
            upkeep = swarm.nodes["a0"].upkeep
            assert upkeep.health == 0 and upkeep.suspicion_timeout() == FAST.suspect_timeout_s  # log10(4) < 1
            for peer in ("a1", "a2", "a3"):
                swarm.network.cut("a0", peer)
            for _ in range(3):  # a0 is the one cut off: its probes fail, so it trusts its own judgement less
                await upkeep.ping_round()
            assert upkeep.health == 3
            assert upkeep.suspicion_timeout() == 4 * FAST.suspect_timeout_s and upkeep.scaled(1.0) == 4.0
            swarm.network.heal()
            for name in ("a1", "a2", "a3"):  # refutations spread; healthy probes bring health back
                swarm.nodes[name].membership.merge_all(swarm.nodes["a0"].membership.view())
            await upkeep.ping_round()
            assert upkeep.health == 2

    run(scenario)


def test_suspicion_lasts_longer_in_a_bigger_swarm() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            node = swarm.node("a", 0.1, ScriptedBackend())
            node.membership.merge_all([Member(name=f"p{i}", cost=0.5) for i in range(99)], spread=False)
            assert abs(node.upkeep.suspicion_timeout() - 2 * FAST.suspect_timeout_s) < 1e-9  # log10(100) = 2

    run(scenario)


def test_suspicion_outlasts_the_gossip_rounds_a_refutation_needs() -> None:
    async def scenario() -> None:
        slow_gossip = NodeConfig(gossip_interval_s=1.0, suspect_timeout_s=1.0)
        async with MemorySwarm(slow_gossip) as swarm:
            node = swarm.node("a", 0.1, ScriptedBackend())
            node.membership.merge_all([Member(name=f"p{i}", cost=0.5) for i in range(63)], spread=False)
            assert node.upkeep.suspicion_timeout() == 2 * 1.0 * 7  # 64 alive: 2 x ceil(log2(65)) rounds of 1 s

    run(scenario)


def test_a_newcomer_spreads_its_own_arrival_even_if_its_seed_dies() -> None:
    """Not only the seed owes the swarm the news of a join: the newcomer's first gossip carries it,
    so the news survives a seed that crashes right after the join."""
    async def scenario() -> None:
        async with four(FAST) as swarm:
            await swarm.start_all(background=False)
            node = await swarm.join("n", 0.2, ScriptedBackend(), seeds=["a0"], background=False)
            swarm.kill("a0")
            assert "n" in [m.name for m in node.membership.take_updates(limit=100)]
            for _ in range(5):  # a round may pick the dead seed; the news is owed several times
                await node.upkeep.gossip_round()
            assert any(swarm.nodes[p].membership.get("n") is not None for p in ("a1", "a2", "a3"))

    run(scenario)
