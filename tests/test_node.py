"""AgentNode routing on the in-memory swarm: cascades, graphs, faults, joins, leaves, deadlines.

Everything here runs the real routing core (AgentNode, Membership, NeighbourTable, the codec)
on MemoryNetwork; only the models are replaced, by ScriptedBackend or ReplayBackend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from swarm.backends.replay import ReplayBackend, ReplayTable
from swarm.client import Answer, new_query
from swarm.entry import GRACE_S
from swarm.errors import DeadlineExceeded, NoCapableAgent, ProtocolError, QueryError, QueryTooLarge, SwarmError
from swarm.node import AgentNode, NodeConfig
from swarm.policies import SelfAware
from swarm.protocol import Member, Result, Status, StatusRequest, encode, error_reply, expect
from swarm.testing import MemorySwarm, ScriptedBackend

# Short intervals for the tests where background gossip and pings matter.
FAST = NodeConfig(gossip_interval_s=0.02, ping_interval_s=0.02, ping_timeout_s=0.1, suspect_timeout_s=0.2, drain_timeout_s=2.0)


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    """Run one async scenario; a hang fails the test instead of stalling the suite."""

    async def main() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(main())


def decisions(trace) -> list[tuple[str, str]]:
    return [(h.agent, h.decision) for h in trace]


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


async def send_query(swarm: MemorySwarm, entry: str, text: str, deadline_s: float = 2.0, max_hops: int = 8, alpha: float = 0.5) -> Result:
    """Hand a query straight to one agent, as a client would, and decode its Result."""
    q = new_query(text, alpha, deadline_s, max_hops, 100_000)
    return expect(await swarm.network.deliver(entry, encode(q)), Result)


@contextlib.asynccontextmanager
async def started(swarm: MemorySwarm, background: bool = False) -> AsyncIterator[MemorySwarm]:
    """The swarm, every node started (without gossip and ping loops unless `background`), stopped at the end."""
    async with swarm:
        await swarm.start_all(background=background)
        yield swarm


def cascade(config: NodeConfig = NodeConfig(), **kwargs: Any) -> MemorySwarm:
    swarm = MemorySwarm(config, **kwargs)
    swarm.node("small", 0.1, ScriptedBackend({"easy": "small: 1"}))
    swarm.node("medium", 0.5, ScriptedBackend({"easy": "medium: 1", "medium": "medium: 2"}))
    swarm.node("large", 0.9, ScriptedBackend({"easy": "large: 1", "medium": "large: 2", "hard": "large: 3"}))
    return swarm


def backend(swarm: MemorySwarm, name: str) -> ScriptedBackend:
    b = swarm.nodes[name].backend
    assert isinstance(b, ScriptedBackend)
    return b


# -- the cascade ------------------------------------------------------------------------------


def test_easy_query_is_answered_by_the_cheapest_agent() -> None:
    async def scenario() -> None:
        async with started(cascade()) as swarm:
            answer = await swarm.ask("easy")
            assert isinstance(answer, Answer)
            assert (answer.agent, answer.text, answer.cost, answer.entry) == ("small", "small: 1", 0.1, "small")
            assert decisions(answer.trace) == [("small", "answer")]
            assert answer.path == ["small"]
            assert answer.hops == 0
            assert answer.tokens > 0
            assert backend(swarm, "medium").calls == backend(swarm, "large").calls == 0

    run(scenario)


def test_harder_queries_travel_up_the_cascade_with_a_full_trace() -> None:
    async def scenario() -> None:
        async with started(cascade()) as swarm:
            medium = await swarm.ask("medium")
            assert (medium.agent, medium.text, medium.cost) == ("medium", "medium: 2", 0.5)
            assert decisions(medium.trace) == [("small", "reject"), ("medium", "answer")]
            assert (medium.path, medium.hops) == (["small", "medium"], 1)

            hard = await swarm.ask("hard")
            assert (hard.agent, hard.text, hard.cost) == ("large", "large: 3", 0.9)
            # The last agent has no stronger peer: it answers because it must, and says so.
            assert decisions(hard.trace) == [("small", "reject"), ("medium", "reject"), ("large", "forced")]
            assert (hard.path, hard.hops) == (["small", "medium", "large"], 2)
            assert hard.tokens == sum(h.tokens_in + h.tokens_out for h in hard.trace) > 0

            unknown = await swarm.ask("what is the meaning of life?")
            assert unknown.agent == "large"
            assert decisions(unknown.trace)[-1] == ("large", "forced")
            assert unknown.text == "I cannot answer this."

            small = swarm.nodes["small"].counters
            assert (small.received, small.answered, small.rejected, small.forwarded) == (3, 0, 3, 3)
            large = swarm.nodes["large"].counters
            assert (large.received, large.answered, large.forced) == (2, 2, 2)
            status = expect(await swarm.network.deliver("medium", encode(StatusRequest())), Status)
            assert (status.name, status.received, status.answered, status.rejected, status.forwarded) == ("medium", 3, 1, 2, 2)
            assert status.in_flight == 0
            assert [m.name for m in status.members] == ["large", "medium", "small"]
            # 1.3: the edges the queries took, per peer, and (at the entry) each query's path and decisions.
            assert [(p.peer, p.count) for p in status.forwards_to] == [("large", 2)]
            entry = expect(await swarm.network.deliver("small", encode(StatusRequest())), Status)
            assert [(p.peer, p.count) for p in entry.forwards_to] == [("medium", 3)]
            assert [r.agent for r in entry.recent] == ["medium", "large", "large"] and status.recent == []
            assert decisions(entry.recent[1].trace) == [("small", "reject"), ("medium", "reject"), ("large", "forced")]
            assert entry.recent[0].age_s >= entry.recent[-1].age_s >= 0

    run(scenario)


def test_query_entering_at_the_terminal_agent_is_forced() -> None:
    async def scenario() -> None:
        async with started(cascade()) as swarm:
            result = await send_query(swarm, "large", "easy")
            assert result.ok and result.agent == "large"
            assert decisions(result.trace) == [("large", "forced")]
            # Entering in the middle skips cheaper agents: routing only goes to stronger peers.
            result = await send_query(swarm, "medium", "hard")
            assert decisions(result.trace) == [("medium", "reject"), ("large", "forced")]

    run(scenario)


def test_single_agent_swarm_answers_everything_forced() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("solo", 0.3, ScriptedBackend({"x": "solo: x"}))
            await swarm.start_all(background=False)
            answer = await swarm.ask("y")
            assert (answer.agent, decisions(answer.trace)) == ("solo", [("solo", "forced")])

    run(scenario)


# -- scenario / alpha with the replay backend ---------------------------------------------------


@pytest.fixture
def replay_table(tmp_path: Path) -> ReplayTable:
    rows = [
        {"query": "What is 12 * 12?", "gold": "144", "agents": {
            "m1": {"answer": "m1 says 144", "correct": True, "p": 0.60},
            "m2": {"answer": "m2 says 144", "correct": True, "p": 0.80},
            "m3": {"answer": "m3 says 144", "correct": True, "p": 0.95},
        }},
        {"query": "Boundary?", "gold": "b", "agents": {
            "m1": {"answer": "m1 boundary", "correct": True, "p": 0.5},
            "m2": {"answer": "m2 boundary", "correct": True, "p": 0.51},
            "m3": {"answer": "m3 boundary", "correct": True, "p": 0.9},
        }},
    ]
    path = tmp_path / "table.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return ReplayTable.load(path)


def replay_swarm(table: ReplayTable) -> MemorySwarm:
    swarm = MemorySwarm()
    for name, cost in (("m1", 0.1), ("m2", 0.4), ("m3", 0.9)):
        swarm.node(name, cost, ReplayBackend(table, name))
    return swarm


@pytest.mark.parametrize(
    ("scenario_name", "agent", "trace"),
    [
        # threshold (1 - alpha) ** 0.5: cost_first 0.447, balance 0.707, performance_first 0.894
        ("cost_first", "m1", [("m1", "answer")]),
        ("balance", "m2", [("m1", "reject"), ("m2", "answer")]),
        ("performance_first", "m3", [("m1", "reject"), ("m2", "reject"), ("m3", "forced")]),
    ],
)
def test_scenario_moves_the_answer_along_the_cascade(replay_table: ReplayTable, scenario_name: str, agent: str, trace: list) -> None:
    async def scenario() -> None:
        async with started(replay_swarm(replay_table)) as swarm:
            answer = await swarm.ask("what is 12  *  12?", scenario=scenario_name)  # the table normalises spacing and case
            assert answer.agent == agent
            assert answer.text == f"{agent} says 144"
            assert decisions(answer.trace) == trace

    run(scenario)


def test_cost_first_is_answered_cheaper_than_performance_first(replay_table: ReplayTable) -> None:
    async def scenario() -> None:
        async with started(replay_swarm(replay_table)) as swarm:
            cheap = await swarm.ask("What is 12 * 12?", scenario="cost_first")
            careful = await swarm.ask("What is 12 * 12?", scenario="performance_first")
            assert cheap.cost < careful.cost
            assert cheap.hops < careful.hops

    run(scenario)


def test_rejection_threshold_is_inclusive(replay_table: ReplayTable) -> None:
    async def scenario() -> None:
        async with started(replay_swarm(replay_table)) as swarm:
            # alpha 0.75: threshold (0.25) ** 0.5 == 0.5 exactly; p == 0.5 rejects, p == 0.51 answers.
            answer = await swarm.ask("Boundary?", alpha=0.75)
            assert decisions(answer.trace) == [("m1", "reject"), ("m2", "answer")]
            assert answer.text == "m2 boundary"
            # alpha 0 (accuracy only): everyone with p <= 1 rejects, so the strongest is forced.
            answer = await swarm.ask("Boundary?", alpha=0.0)
            assert decisions(answer.trace) == [("m1", "reject"), ("m2", "reject"), ("m3", "forced")]
            # alpha 1 (cost only): threshold 0, the cheapest answers.
            answer = await swarm.ask("Boundary?", alpha=1.0)
            assert answer.agent == "m1"

    run(scenario)


# -- graph routing ------------------------------------------------------------------------------

RING = [f"n{i}" for i in range(6)]
# A ring plus three chords, each link declared at one end only (links are undirected).
EDGES = {frozenset((RING[i], RING[(i + 1) % 6])) for i in range(6)} | {frozenset(p) for p in (("n0", "n3"), ("n1", "n4"), ("n2", "n5"))}


def ring_swarm(max_hops: int = 8) -> MemorySwarm:
    swarm = MemorySwarm(NodeConfig(routing="graph"), max_hops=max_hops)
    for i, name in enumerate(RING):
        links = sorted(other for e in EDGES if name in e for other in e if other != name and other > name)
        swarm.node(name, 0.1 * (i + 1), ScriptedBackend(), links=links)  # knows nothing: rejects all
    return swarm


def test_graph_with_cycles_never_revisits_and_follows_links() -> None:
    async def scenario() -> None:
        async with started(ring_swarm()) as swarm:
            for entry in RING:
                result = await send_query(swarm, entry, f"from {entry}")
                assert result.ok
                agents = [h.agent for h in result.trace]
                assert len(agents) == len(set(agents)), f"an agent appears twice: {agents}"
                assert agents[0] == entry and agents[-1] == result.agent
                assert [d for _, d in decisions(result.trace)] == ["reject"] * (len(agents) - 1) + ["forced"]
                for here, there in zip(agents, agents[1:]):
                    assert frozenset((here, there)) in EDGES, f"{here} -> {there} is not a link"
                    assert swarm.nodes[there].membership.self_entry.cost > swarm.nodes[here].membership.self_entry.cost
            answer = await swarm.ask("from the client")
            assert answer.path == RING  # always the cheapest stronger linked peer

    run(scenario)


def test_graph_routes_around_a_dead_link_without_revisiting() -> None:
    async def scenario() -> None:
        async with started(ring_swarm()) as swarm:
            swarm.kill("n1")
            answer = await swarm.ask("q")
            assert decisions(answer.trace) == [("n0", "reject"), ("n1", "unreachable"), ("n3", "reject"), ("n4", "reject"), ("n5", "forced")]
            assert answer.path == ["n0", "n3", "n4", "n5"]

    run(scenario)


@pytest.mark.parametrize("max_hops", [1, 2, 3, 5])
def test_hop_budget_is_respected(max_hops: int) -> None:
    async def scenario() -> None:
        async with started(ring_swarm(max_hops=max_hops)) as swarm:
            answer = await swarm.ask("q")
            # max_hops counts the agents that may hold the query: the one holding it when the budget
            # is spent answers, forced.
            assert answer.path == RING[:max_hops]
            assert answer.hops == max_hops - 1
            assert decisions(answer.trace)[-1] == (RING[max_hops - 1], "forced")

    run(scenario)


# -- dead peers ---------------------------------------------------------------------------------


def three(config: NodeConfig = NodeConfig(), b_delay: float = 0.0, **kwargs: Any) -> MemorySwarm:
    swarm = MemorySwarm(config, **kwargs)
    swarm.node("a", 0.1, ScriptedBackend())
    swarm.node("b", 0.5, ScriptedBackend({"q": "b: q"}, delay_s=b_delay))
    swarm.node("c", 0.9, ScriptedBackend({"q": "c: q"}))
    return swarm


def test_peer_killed_before_the_query_is_routed_around_and_marked_dead() -> None:
    async def scenario() -> None:
        async with started(three()) as swarm:
            swarm.kill("b")
            assert swarm.nodes["a"].membership.get("b").state == "alive"  # nobody noticed yet
            answer = await swarm.ask("q")
            assert (answer.agent, answer.text) == ("c", "c: q")
            assert decisions(answer.trace) == [("a", "reject"), ("b", "unreachable"), ("c", "forced")]
            assert answer.path == ["a", "c"]
            assert swarm.nodes["a"].membership.get("b").state == "dead"
            # The next query does not try b again.
            again = await swarm.ask("q")
            assert decisions(again.trace) == [("a", "reject"), ("c", "forced")]

    run(scenario)


def test_peer_killed_while_holding_the_query() -> None:
    async def scenario() -> None:
        async with started(three(b_delay=2.0)) as swarm:
            start = time.monotonic()
            pending = asyncio.ensure_future(swarm.ask("q"))
            assert await wait_until(lambda: backend(swarm, "b").calls == 1, 1.0)
            swarm.kill("b")
            answer = await pending
            assert time.monotonic() - start < 1.0  # re-routed at once, not after b's generation
            assert answer.agent == "c"
            assert decisions(answer.trace) == [("a", "reject"), ("b", "unreachable"), ("c", "forced")]
            assert swarm.nodes["a"].membership.get("b").state == "dead"
            assert swarm.nodes["a"].counters.in_flight == 0

    run(scenario)


def test_ping_round_suspects_a_hung_peer_then_declares_it_dead() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend())
            await swarm.start_all(background=False)
            a = swarm.nodes["a"]
            swarm.network.freeze("b")
            await a.upkeep.ping_round()
            assert a.membership.get("b").state == "suspect"
            await a.upkeep.ping_round()  # not yet past suspect_timeout_s
            assert a.membership.get("b").state in ("suspect", "dead")
            await asyncio.sleep(a.upkeep.suspicion_timeout())  # stretched: a's own probes failed (local health)
            await a.upkeep.ping_round()
            assert a.membership.get("b").state == "dead"
            swarm.network.thaw("b")

    run(scenario)


def test_ping_round_marks_a_killed_peer_dead_at_once() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend())
            await swarm.start_all(background=False)
            swarm.kill("b")
            await swarm.nodes["a"].upkeep.ping_round()
            assert swarm.nodes["a"].membership.get("b").state == "dead"

    run(scenario)


async def start_with_stuck(swarm: MemorySwarm, stuck: str) -> None:
    """start_all, except that `stuck` runs no background loops: with network.freeze it is a process
    that neither answers nor sends anything, like one stuck in a C call."""
    view = [n.membership.self_entry for n in swarm.nodes.values()]
    for node in swarm.nodes.values():
        node.membership.merge_all(view)
    await asyncio.gather(*(node.start(background=name != stuck) for name, node in swarm.nodes.items()))


def test_hung_peer_is_suspected_then_dead_and_its_query_rerouted() -> None:
    async def scenario() -> None:
        swarm = three(FAST, deadline_s=5.0)
        await start_with_stuck(swarm, "b")
        seen: dict[str, list[str]] = {"a": [], "c": []}

        async def watch() -> None:
            while True:
                for name, states in seen.items():
                    state = swarm.nodes[name].membership.get("b").state
                    if not states or states[-1] != state:
                        states.append(state)
                await asyncio.sleep(0.002)

        watcher = asyncio.ensure_future(watch())
        swarm.network.freeze("b")
        start = time.monotonic()
        answer = await swarm.ask("q")
        took = time.monotonic() - start
        assert answer.agent == "c"
        assert took < 2.0, f"re-routing took {took:.2f}s of a 5s deadline"
        assert decisions(answer.trace) == [("a", "reject"), ("b", "unreachable"), ("c", "forced")]
        assert "judged dead" in answer.trace[1].detail
        # The watcher samples every few ms: let it catch up with both views.
        assert await wait_until(lambda: seen["a"][-1:] == seen["c"][-1:] == ["dead"], 2.0)
        watcher.cancel()
        assert seen["a"] == ["alive", "suspect", "dead"]
        assert seen["c"][0] == "alive" and seen["c"][-1] == "dead" and "suspect" in seen["c"]
        await swarm.stop()
        swarm.network.thaw("b")

    run(scenario)


def test_frozen_agent_with_running_loops_is_routed_around() -> None:
    async def scenario() -> None:
        swarm = three(FAST, deadline_s=1.5)
        await swarm.start_all()
        swarm.network.freeze("b")
        try:
            answer = await asyncio.wait_for(swarm.ask("q"), 2.5)
            assert answer.agent == "c"
            assert swarm.nodes["a"].membership.get("b").state == "dead"
        finally:
            await swarm.stop()
            swarm.network.thaw("b")

    run(scenario)


# -- deadlines ----------------------------------------------------------------------------------


def test_slow_only_path_gives_deadline_exceeded() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.9, ScriptedBackend({"q": "b: q"}, delay_s=5.0))
            await swarm.start_all(background=False)
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded) as info:
                await asyncio.wait_for(swarm.ask("q", deadline_s=0.3), 2.0)
            took = time.monotonic() - start
            assert 0.25 <= took < 1.0
            assert info.value.code == "deadline_exceeded"
            assert info.value.trace and info.value.trace[0].agent == "a"
            assert swarm.nodes["a"].counters.in_flight == 0

    run(scenario)


def test_hanging_backend_at_the_entry_passes_the_query_on_in_time() -> None:
    """A hung model answers pings (its loop is fine) but must not spend the query's whole budget:
    it gets `generation_share` of the time left, then the query moves on and is answered."""
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.9, ScriptedBackend({"q": "b: q"}))
            backend(swarm, "a").hang = True
            await swarm.start_all(background=False)
            start = time.monotonic()
            answer = await asyncio.wait_for(swarm.ask("q", deadline_s=1.0), 2.0)
            assert answer.agent == "b" and decisions(answer.trace) == [("a", "error"), ("b", "forced")]
            assert "50% of the time left" in answer.trace[0].detail
            assert 0.45 <= time.monotonic() - start < 0.9

    run(scenario)


def test_hanging_backend_of_the_last_agent_gives_deadline_exceeded() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            backend(swarm, "a").hang = True
            await swarm.start_all(background=False)
            with pytest.raises(DeadlineExceeded) as info:
                await asyncio.wait_for(swarm.ask("q", deadline_s=0.2), 2.0)
            assert decisions(info.value.trace) == [("a", "error")]

    run(scenario)


def test_circuit_breaker_stops_asking_a_hung_backend_then_tries_again() -> None:
    async def scenario() -> None:
        config = NodeConfig(breaker_failures=3, breaker_cooldown_s=0.5)
        async with MemorySwarm(config) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.9, ScriptedBackend({"q": "b: q"}))
            a = backend(swarm, "a")
            a.hang = True
            await swarm.start_all(background=False)
            for _ in range(3):  # each spends half its budget at a before moving on
                assert (await swarm.ask("q", deadline_s=0.2)).agent == "b"
            assert a.calls == 3
            start = time.monotonic()
            answers = [await swarm.ask("q", deadline_s=0.2) for _ in range(5)]
            assert time.monotonic() - start < 0.2  # open: a passes them on without asking its model
            assert a.calls == 3 and all(x.agent == "b" and x.trace[0].detail.startswith("circuit open") for x in answers)
            await asyncio.sleep(0.5)
            a.hang = False
            a.answers["q"] = "a: q"
            assert (await swarm.ask("q", deadline_s=0.2)).agent == "a"  # the trial after the cool-down closes it
            assert a.calls == 4 and (await swarm.ask("q", deadline_s=0.2)).agent == "a"

    run(scenario)


# -- backend failures ---------------------------------------------------------------------------


def test_backend_failure_in_the_middle_moves_the_query_on() -> None:
    async def scenario() -> None:
        async with three() as swarm:
            backend(swarm, "b").fail = True
            await swarm.start_all(background=False)
            answer = await swarm.ask("q")
            assert (answer.agent, answer.text) == ("c", "c: q")
            assert decisions(answer.trace) == [("a", "reject"), ("b", "error"), ("c", "forced")]
            assert "scripted backend failure" in answer.trace[1].detail

    run(scenario)


def test_every_backend_failing_gives_no_capable_agent() -> None:
    async def scenario() -> None:
        async with three() as swarm:
            for name in ("a", "b", "c"):
                backend(swarm, name).fail = True
            await swarm.start_all(background=False)
            with pytest.raises(NoCapableAgent) as info:
                await swarm.ask("q")
            assert info.value.code == "no_capable_agent"
            assert {h.agent for h in info.value.trace} == {"a", "b", "c"}
            assert {h.decision for h in info.value.trace} == {"error"}
            assert all(backend(swarm, n).calls >= 1 for n in ("a", "b", "c"))
            assert all(n.counters.in_flight == 0 for n in swarm.nodes.values())

    run(scenario)


def test_terminal_failure_falls_back_to_the_last_holder() -> None:
    async def scenario() -> None:
        async with three() as swarm:
            backend(swarm, "c").fail = True
            await swarm.start_all(background=False)
            answer = await swarm.ask("r")  # nobody knows "r": a and b reject, c breaks
            # c could not answer, so b, the last agent able to, answers anyway.
            assert answer.agent == "b"
            assert decisions(answer.trace)[-1] == ("b", "forced")
            assert ("c", "error") in decisions(answer.trace)

    run(scenario)


# -- joining ------------------------------------------------------------------------------------


def test_join_spreads_by_gossip_and_the_newcomer_gets_traffic() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.3, ScriptedBackend())
            swarm.node("c", 0.9, ScriptedBackend({"only-d": "c guesses"}))
            await swarm.start_all()
            before = await swarm.ask("only-d")
            assert before.agent == "c"

            d = await swarm.join("d", 0.5, ScriptedBackend({"only-d": "d knows"}), seeds=["c"])
            assert {m.name for m in d.membership.view()} == {"a", "b", "c", "d"}  # the seed's view
            assert swarm.nodes["c"].membership.get("d").state == "alive"
            knows_d = lambda: all((m := n.membership.get("d")) is not None and m.state == "alive" for n in swarm.nodes.values())  # noqa: E731
            assert await wait_until(knows_d, 1.0), "gossip did not spread the join"

            answer = await swarm.ask("only-d")
            assert (answer.agent, answer.text) == ("d", "d knows")
            assert decisions(answer.trace) == [("a", "reject"), ("b", "reject"), ("d", "answer")]

    run(scenario)


def test_join_spreads_within_a_bounded_number_of_gossip_rounds() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            for i in range(8):
                swarm.node(f"p{i}", 0.1 * (i + 1), ScriptedBackend(), seed=i)
            await swarm.start_all(background=False)
            await swarm.join("new", 0.05, ScriptedBackend(), seeds=["p3"], background=False)
            for rounds in range(1, 11):
                for node in list(swarm.nodes.values()):
                    await node.upkeep.gossip_round()
                if all(n.membership.get("new") is not None for n in swarm.nodes.values()):
                    break
            else:
                pytest.fail("9 agents did not all learn of the newcomer in 10 gossip rounds")
            assert rounds <= 6, rounds
            # All views converge to the same digest once the news has spread.
            for _ in range(3):
                for node in list(swarm.nodes.values()):
                    await node.upkeep.gossip_round()
            assert len({n.membership.digest() for n in swarm.nodes.values()}) == 1

    run(scenario)


def test_join_with_no_reachable_seed_raises() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            await swarm.start_all(background=False)
            with pytest.raises(SwarmError, match="ghost"):
                await swarm.join("d", 0.5, ScriptedBackend(), seeds=["ghost", "phantom"], background=False)
            assert swarm.nodes["a"].membership.get("d") is None
            # An unreachable seed is skipped when a later one answers.
            e = await swarm.join("e", 0.6, ScriptedBackend(), seeds=["ghost", "a"], background=False)
            assert e.membership.get("a") is not None
            assert swarm.nodes["a"].membership.get("e").state == "alive"

    run(scenario)


def test_rejoin_under_the_same_name_outbids_the_dead_entry() -> None:
    async def scenario() -> None:
        async with started(three()) as swarm:
            swarm.kill("b")
            await swarm.nodes["a"].upkeep.ping_round()  # a's only other peers are b and c; retry until b is judged
            while swarm.nodes["a"].membership.get("b").state != "dead":
                await swarm.nodes["a"].upkeep.ping_round()
            b2 = await swarm.join("b", 0.5, ScriptedBackend({"q": "b2: q"}), seeds=["a"], background=False)
            assert b2.membership.self_entry.incarnation >= 1  # outbid its old life
            for _ in range(3):
                await b2.upkeep.gossip_round()
                await swarm.nodes["a"].upkeep.gossip_round()
            assert swarm.nodes["a"].membership.get("b").state == "alive"
            answer = await swarm.ask("q")
            assert answer.agent == "b" and answer.text == "b2: q"

    run(scenario)


# -- leaving ------------------------------------------------------------------------------------


def test_leaving_entry_finishes_in_flight_query_then_refuses() -> None:
    async def scenario() -> None:
        async with MemorySwarm(NodeConfig(drain_timeout_s=2.0)) as swarm:
            swarm.node("a", 0.1, ScriptedBackend({"q": "a: q"}, delay_s=0.3))
            swarm.node("b", 0.5, ScriptedBackend({"q2": "b: q2"}))
            swarm.node("c", 0.9, ScriptedBackend())
            await swarm.start_all(background=False)
            a = swarm.nodes["a"]
            in_flight = asyncio.ensure_future(swarm.ask("q"))
            assert await wait_until(lambda: backend(swarm, "a").calls == 1, 1.0)
            leaving = asyncio.ensure_future(a.leave())
            await asyncio.sleep(0.02)
            assert not leaving.done(), "leave must wait for the in-flight query"
            assert a.membership.self_entry.state == "left"
            # A query arriving now is refused at a...
            refused = await send_query(swarm, "a", "q2")
            assert (refused.ok, refused.error_code) == (False, "refused")
            assert decisions(refused.trace) == [("a", "refused")]
            # ...and a client routes around it.
            other = await swarm.ask("q2")
            assert (other.agent, other.entry) == ("b", "b")
            assert "a" not in other.path
            # The query a was already working on completes, answered by a.
            answer = await in_flight
            assert (answer.agent, answer.text) == ("a", "a: q")
            assert decisions(answer.trace) == [("a", "answer")]
            await asyncio.wait_for(leaving, 1.0)
            assert a.counters.in_flight == 0
            for peer in ("b", "c"):
                assert swarm.nodes[peer].membership.get("a").state == "left"

    run(scenario)


def test_left_agent_is_skipped_by_its_peers() -> None:
    async def scenario() -> None:
        async with started(three()) as swarm:
            await swarm.leave("b")
            assert "b" not in swarm.nodes
            for peer in ("a", "c"):
                assert swarm.nodes[peer].membership.get("b").state == "left"
            answer = await swarm.ask("q")
            assert decisions(answer.trace) == [("a", "reject"), ("c", "forced")]

    run(scenario)


def test_leaving_agent_drains_a_query_forwarded_to_it() -> None:
    async def scenario() -> None:
        async with started(three(NodeConfig(drain_timeout_s=2.0), b_delay=0.3)) as swarm:
            pending = asyncio.ensure_future(swarm.ask("q"))
            assert await wait_until(lambda: backend(swarm, "b").calls == 1, 1.0)
            await swarm.nodes["b"].leave()
            answer = await pending
            # b drained the query it held: its answer reaches the client, and its peers see a goodbye, not a death.
            assert answer.agent == "b"
            assert decisions(answer.trace) == [("a", "reject"), ("b", "answer")]
            assert swarm.nodes["a"].membership.get("b").state == "left"

    run(scenario)


# -- load with a crash ----------------------------------------------------------------------------


@pytest.mark.parametrize("victim", ["a", "b"])
def test_concurrent_queries_with_a_crash_are_never_lost(victim: str) -> None:
    n = 200

    async def scenario() -> None:
        async with MemorySwarm(deadline_s=5.0) as swarm:
            swarm.node("a", 0.1, ScriptedBackend({f"q{i}": f"a{i}" for i in range(0, n, 5)}))
            swarm.node("b", 0.5, ScriptedBackend({f"q{i}": f"b{i}" for i in range(0, n, 2)}, delay_s=0.03))
            swarm.node("c", 0.9, ScriptedBackend({f"q{i}": f"c{i}" for i in range(n)}))
            await swarm.start_all(background=False)
            tasks = []
            for i in range(n):
                tasks.append(asyncio.ensure_future(swarm.ask(f"q{i}")))
                if i % 10 == 9:
                    await asyncio.sleep(0.005)
                if i == n // 2:
                    swarm.kill(victim)
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            assert len(outcomes) == n
            unexpected = [o for o in outcomes if not isinstance(o, (Answer, QueryError))]
            assert unexpected == []
            answers = [o for o in outcomes if isinstance(o, Answer)]
            assert len(answers) == n, [str(o) for o in outcomes if isinstance(o, QueryError)][:5]
            assert len({a.query_id for a in answers}) == n
            for i, answer in enumerate(outcomes):
                assert answer.text == f"{answer.agent}{i}"  # the answer belongs to this query
            by_agent = {name: sum(a.agent == name for a in answers) for name in ("a", "b", "c")}
            assert by_agent["b"] > 0 and by_agent["c"] > 0, by_agent
            assert any(h.decision == "unreachable" for a in answers for h in a.trace) or victim == "a"
            for node in swarm.nodes.values():
                assert node.counters.in_flight == 0
            if victim == "b":
                assert swarm.nodes["a"].membership.get("b").state == "dead"

    run(scenario, timeout=10.0)


# -- oversize queries ---------------------------------------------------------------------------


def test_oversize_query_is_refused_before_sending() -> None:
    async def scenario() -> None:
        async with started(cascade(max_query_chars=50)) as swarm:
            sent = swarm.network.messages
            with pytest.raises(QueryTooLarge, match="50"):
                await swarm.ask("x" * 51)
            assert swarm.network.messages == sent
            assert all(n.counters.received == 0 for n in swarm.nodes.values())
            answer = await swarm.ask("y" * 50)  # exactly at the limit is fine
            assert answer.agent == "large"

    run(scenario)


def test_agent_refuses_a_query_over_its_own_limit() -> None:
    async def scenario() -> None:
        async with MemorySwarm(NodeConfig(max_query_chars=10), max_query_chars=1000) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.9, ScriptedBackend())
            await swarm.start_all(background=False)
            with pytest.raises(QueryError, match="query_too_large"):
                await swarm.ask("z" * 11)
            assert backend(swarm, "a").calls == 0 and swarm.nodes["b"].counters.received == 0

    run(scenario)


# -- bugs -----------------------------------------------------------------------------------------


def test_peer_with_a_smaller_query_limit_is_not_retried_in_a_loop() -> None:
    async def scenario() -> None:
        async with MemorySwarm(deadline_s=0.5) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            strict = AgentNode(Member(name="b", cost=0.5), SelfAware(), ScriptedBackend(), swarm.network.transport(), NodeConfig(max_query_chars=5))
            swarm.network.register(strict)
            swarm.nodes["b"] = strict
            swarm.node("c", 0.9, ScriptedBackend({"a long query": "c: long"}))
            await swarm.start_all(background=False)
            try:
                answer = await swarm.ask("a long query")
                assert answer.agent == "c"
            finally:
                assert strict.counters.received <= 2, f"b was asked {strict.counters.received} times"

    run(scenario)


class _NewerAgent:
    """A peer speaking protocol 2.x: it answers everything with an unsupported_version error, as a
    1.x agent does to it. Stands in for a mixed-version swarm during a rolling upgrade."""

    name = "z"

    async def handle(self, data: bytes) -> bytes:
        return error_reply(ProtocolError("unsupported_version", "this agent speaks 2.x"))


def test_peer_answering_with_a_protocol_error_is_routed_around() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("c", 0.9, ScriptedBackend({"q": "c: q"}))
            await swarm.start_all(background=False)
            swarm.network.register(_NewerAgent())
            for node in swarm.nodes.values():
                node.membership.merge(Member(name="z", cost=0.5))
            answer = await swarm.ask("q")
            assert answer.agent == "c"

    run(scenario)


def test_gossip_round_with_a_hung_peer_is_bounded() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend())
            await swarm.start_all(background=False)
            swarm.network.freeze("b")
            try:
                await asyncio.wait_for(swarm.nodes["a"].upkeep.gossip_round(), 1.0)
            finally:
                swarm.network.thaw("b")

    run(scenario)


def test_join_moves_past_a_hung_seed() -> None:
    async def scenario() -> None:
        async with MemorySwarm(FAST) as swarm:
            swarm.node("a", 0.1, ScriptedBackend())
            swarm.node("b", 0.5, ScriptedBackend())
            await swarm.start_all(background=False)
            swarm.network.freeze("a")
            try:
                d = await asyncio.wait_for(swarm.join("d", 0.7, ScriptedBackend(), seeds=["a", "b"], background=False), 1.0)
            finally:
                swarm.network.thaw("a")
            assert d.membership.get("b") is not None

    run(scenario)


def test_ask_at_a_hung_entry_still_ends_by_its_deadline() -> None:
    async def scenario() -> None:
        async with started(three()) as swarm:
            swarm.network.freeze("a")
            try:
                with pytest.raises(DeadlineExceeded):
                    await asyncio.wait_for(swarm.ask("q", deadline_s=0.2), 0.2 + GRACE_S + 1.0)
            finally:
                swarm.network.thaw("a")

    run(scenario)


def test_fatal_backend_error_makes_the_agent_leave_and_queries_move_on():
    from swarm.errors import BackendError
    from swarm.policies import AlwaysAnswer

    async def scenario():
        s = MemorySwarm()
        broken = ScriptedBackend({"q": "from m1"})
        s.node("m1", 0.1, broken)
        s.node("m2", 0.9, ScriptedBackend({"q": "from m2"}), AlwaysAnswer())
        await s.start_all(background=False)
        broken.fail = BackendError("engine died", fatal=True)
        first = await s.ask("q")
        for _ in range(50):
            if s.nodes["m2"].membership.get("m1").state == "left":
                break
            await asyncio.sleep(0.01)
        return first, s.nodes["m1"].membership.self_entry.state, s.nodes["m2"].membership.get("m1").state, broken.calls

    first, own_state, seen_by_peer, calls = asyncio.run(scenario())
    assert first.agent == "m2" and [(h.agent, h.decision) for h in first.trace] == [("m1", "error"), ("m2", "forced")]
    assert own_state == "left" and seen_by_peer == "left" and calls == 1
