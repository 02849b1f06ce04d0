"""Speculative forwarding (swarm.speculation), on the in-memory transport with scripted slow backends:
an agent in its uncertain band passes the query on while it generates, routing's result stays the
one it would be without speculation, and the copy not kept is cancelled (and shows in the trace).
Ray is stood in for by `cancel_abandoned=False`: a copy runs on until the Cancel message reaches it.
The real-model check on a Ray swarm is in tests/test_speculation_ray.py."""

from __future__ import annotations

import asyncio
import math

import pytest

from swarm.client import Answer
from swarm.node import NodeConfig
from swarm.policies import AlwaysAnswer, SelfAware
from swarm.protocol import Status, StatusRequest, encode, expect
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.topology import TopologyError, parse_topology
from swarm.transport.memory import MemoryNetwork
from test_node import run, wait_until

# a's self-assessment (self_aware, decide: logprobs, margin 0: it answers when P(reject start) < 0.5)
UNSURE_KNOWS = "unsure, and a knows"  # P(reject) 0.4: in a band of 0.3; a answers
UNSURE_DOES_NOT = "unsure, and a does not know"  # P(reject) 0.4: in the band; a's reply is the reject phrase
SURE = "sure, and a knows"  # P(reject) 0.05: outside the band, no speculation
REJECTS = "a rejects at once"  # P(reject) 0.9: rejected before generating
QUERIES = (UNSURE_KNOWS, UNSURE_DOES_NOT, SURE, REJECTS)


def three(speculate: float, a_delay_s: float = 0.3, b_delay_s: float = 0.3) -> MemorySwarm:
    swarm = MemorySwarm(NodeConfig(), network=MemoryNetwork(cancel_abandoned=False))
    scores = {UNSURE_KNOWS: math.log(0.4), UNSURE_DOES_NOT: math.log(0.4), SURE: math.log(0.05), REJECTS: math.log(0.9)}
    a = ScriptedBackend({UNSURE_KNOWS: "a: 1", SURE: "a: 3"}, delay_s=a_delay_s, reject_logprobs=scores)
    swarm.node("a", 0.1, a, SelfAware(decide="logprobs", speculate=speculate))
    b = ScriptedBackend({q: f"b: {q}" for q in (UNSURE_DOES_NOT, REJECTS)}, delay_s=b_delay_s, reject_logprobs={})
    swarm.node("b", 0.5, b, SelfAware(decide="logprobs", speculate=speculate))
    swarm.node("c", 0.9, ScriptedBackend({q: f"c: {q}" for q in QUERIES}), AlwaysAnswer())
    return swarm


def routed(answer: Answer) -> tuple:
    """What routing returned, speculation's own trace hops left out."""
    hops = [(h.agent, h.decision) for h in answer.trace if "speculative copy" not in h.detail]
    return answer.agent, answer.text, hops


def test_the_result_is_the_one_routing_without_speculation_returns() -> None:
    async def answers(speculate: float) -> tuple[list[Answer], dict]:
        async with three(speculate) as swarm:
            await swarm.start_all(background=False)
            got = [await swarm.ask(q, alpha=0.5) for q in QUERIES]
            await asyncio.sleep(0.4)  # the cancelled copies' Cancel messages land
            shown = {n: expect(await swarm.network.deliver(n, encode(StatusRequest())), Status).speculation for n in swarm.nodes}
            assert shown == {n: node.counters.speculation for n, node in swarm.nodes.items()}  # 1.6: Status shows them
            return got, shown

    async def scenario() -> None:
        plain, _ = await answers(0.0)
        speculative, counters = await answers(0.3)
        assert [routed(a) for a in speculative] == [routed(a) for a in plain]
        assert [a.agent for a in plain] == ["a", "b", "a", "b"]
        # a speculated on the two unsure queries: the copy was used once (a rejected), cancelled once (a answered)
        assert (counters["a"].started, counters["a"].used, counters["a"].cancelled) == (2, 1, 1)
        assert counters["b"].started == 0  # b's own P was never in its band (it knows or says so with 0.9)
        wasted = [h for h in speculative[0].trace if "speculative copy" in h.detail]
        assert [(h.agent, h.decision) for h in wasted] == [("b", "refused")]
        assert routed(speculative[0])[2] == [("a", "answer")]  # the path, answer.path, leaves the cancelled copy out
        assert speculative[0].path == ["a"] and wasted[0].seconds > 0  # the copy's run time counts in model_seconds

    run(scenario, timeout=20)


def test_the_copy_passed_on_runs_while_the_agent_generates() -> None:
    """a rejects only once its (slow) reply is the reject phrase; b already works on the query by then."""
    async def scenario() -> None:
        async with three(0.3, a_delay_s=2.0, b_delay_s=0.0) as swarm:
            await swarm.start_all(background=False)
            a, b = swarm.nodes["a"].backend, swarm.nodes["b"].backend
            asking = asyncio.ensure_future(swarm.ask(UNSURE_DOES_NOT, alpha=0.5))
            assert await wait_until(lambda: b.finished == 1, 1.5)
            assert a.finished == 0  # b answered while a still generates
            answer = await asking
            assert answer.agent == "b" and [h.decision for h in answer.trace] == ["reject", "answer"]
        assert answer.trace[0].detail == "speculated: passed on to b while generating"

    run(scenario, timeout=10)


def test_the_copy_not_kept_is_cancelled_and_stops_generating() -> None:
    async def scenario() -> None:
        async with three(0.3, a_delay_s=0.2, b_delay_s=5.0) as swarm:
            await swarm.start_all(background=False)
            a, b = swarm.nodes["a"], swarm.nodes["b"]
            # b knows it too, so its copy generates (slowly) instead of passing the query on
            b.backend.answers[UNSURE_KNOWS] = "b: 1"
            answer = await swarm.ask(UNSURE_KNOWS, alpha=0.5)
            assert answer.agent == "a" and answer.text == "a: 1"
            assert await wait_until(lambda: b.backend.cancelled == 1, 2.0)
            assert b.backend.finished == 0 and b.counters.cancelled == 1 and b.counters.in_flight == 0
            assert a.counters.speculation.cancelled == 1 and a.counters.speculation.cancelled_s > 0

    run(scenario, timeout=10)


def test_no_speculation_when_off_or_for_a_streamed_query() -> None:
    async def scenario() -> None:
        async with three(0.3) as swarm:
            await swarm.start_all(background=False)
            items = [item async for item in swarm.ask_stream(UNSURE_DOES_NOT, alpha=0.5)]
            assert items[-1].agent == "b" and swarm.nodes["a"].counters.speculation.started == 0
        async with three(0.0) as swarm:
            await swarm.start_all(background=False)
            await swarm.ask(UNSURE_DOES_NOT, alpha=0.5)
            assert swarm.nodes["a"].counters.speculation.started == 0

    run(scenario, timeout=10)


def test_a_band_where_no_policy_can_use_it_is_a_clear_error() -> None:

    def topology(policy: str) -> str:
        return ("name: t\nagents:\n  - {name: a, cost: 0.1, backend: {kind: openai, base_url: 'http://127.0.0.1:1/v1', model: m}, "
                f"policy: {policy}}}\n")

    assert parse_topology(topology("{kind: self_aware, decide: logprobs, speculate: 0.2}")).agents[0].policy.speculate == 0.2
    with pytest.raises(TopologyError, match=r"<string>:3: agents\[0\]\.policy: speculate needs decide: logprobs"):
        parse_topology(topology("{kind: self_aware, speculate: 0.2}"))
    with pytest.raises(TopologyError, match="policy.speculate: unknown key"):
        parse_topology(topology("{kind: confidence, speculate: 0.2}"))
    with pytest.raises(TopologyError, match="speculate: input should be less than or equal to 1"):
        parse_topology(topology("{kind: self_aware, decide: logprobs, speculate: 1.5}"))
