"""Latency-aware next hops (swarm.latency): the hop choice, the times agents share, and the
deadline mode on the in-memory swarm (the same on a real Ray cluster: tests/test_ray.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from swarm.assess.curves import value_curve
from swarm.client import new_query
from swarm.latency import OwnTimes, PeerTimes, next_hop_within, with_own
from swarm.protocol import MAX_TRACE, Timing
from swarm.node import NodeConfig
from swarm.policies import SelfAware
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.transport.base import Transport

HOP = 0.01
PEERS = ["m2", "m3", "m4", "m5"]  # cheapest first


def times(**t: tuple[float, float]):
    """name=(decide_s, answer_s) -> the lookup next_hop_within takes."""
    known = {name: Timing(agent=name, decide_s=d, answer_s=a) for name, (d, a) in t.items()}
    return known.get


SLOW_REJECTS = times(m2=(0.3, 0.0), m3=(0.3, 0.0), m4=(0.3, 0.0), m5=(0.0, 0.1))


@pytest.mark.parametrize(("remaining", "expected"), [
    (5.0, "m2"),    # plenty of time: the cascade as it was
    (0.42, "m2"),   # m2 can still reject and leave m5 its answer time (0.3 + 0.01 + 0.11)
    (0.41, "m5"),   # no intermediate can: straight to the strongest peer that fits
    (0.11, "m5"),
    (0.10, None),   # nobody can answer in time: the holder answers itself
])
def test_the_cheapest_peer_on_the_way_to_the_strongest_that_fits(remaining, expected):
    assert next_hop_within(PEERS, remaining, SLOW_REJECTS, HOP) == expected


def test_the_target_is_the_strongest_peer_that_can_answer_in_time():
    lookup = times(m2=(0.05, 0.1), m3=(0.05, 0.2), m4=(0.05, 0.3), m5=(0.05, 2.0))
    assert next_hop_within(PEERS, 0.5, lookup, HOP) == "m2"  # m5 is too slow: m4 is the target, and m2 leaves it room
    assert next_hop_within(PEERS, 0.3, lookup, HOP) == "m2"  # m4 needs 0.31: m3 is the target, and m2 leaves it room (0.27)
    assert next_hop_within(PEERS, 0.25, lookup, HOP) == "m3"  # m2 would not: straight to m3


def test_the_next_hop_best_starts_the_way_at_the_fitting_peer_ranked_highest():
    """`rank` (what a peer's advertised curve is worth): the peers it outranks are skipped, a tie goes to the
    dearer peer, a peer that does not fit is never ranked, and the time rules still hold from the ranked peer on."""
    lookup = times(m2=(0.05, 0.1), m3=(0.05, 0.2), m4=(0.05, 0.3), m5=(0.05, 2.0))
    assert next_hop_within(PEERS, 5.0, lookup, HOP, rank={"m2": 0.1, "m3": 0.6, "m4": 0.5, "m5": 0.4}.get) == "m3"
    assert next_hop_within(PEERS, 5.0, lookup, HOP, rank={"m2": 0.1, "m3": 0.6, "m4": 0.6}.get) == "m4"  # a tie: the dearer
    assert next_hop_within(PEERS, 0.5, lookup, HOP, rank={"m2": 0.1, "m3": 0.3, "m5": 0.9}.get) == "m3"  # m5 does not fit
    assert next_hop_within(PEERS, 5.0, lookup, HOP, rank={}.get) == "m2"  # nothing advertised yet: the cascade
    # m3 ranked highest cannot reject and still leave m5 its time: the way goes on to m5 (its last holder), skipping m2 still
    assert next_hop_within(PEERS, 0.41, SLOW_REJECTS, HOP, rank={"m2": 0.1, "m3": 0.6}.get) == "m5"
    # ranked peer is the target itself: it is chosen, not the cheaper peer worth more answering unjudged
    assert next_hop_within(PEERS, 0.41, SLOW_REJECTS, HOP, value={"m2": 0.9, "m5": 0.1}.get, rank={"m5": 0.7}.get) == "m5"


def test_when_no_peer_on_the_way_can_reject_in_time_the_query_goes_to_the_peer_worth_most_that_fits():
    worth = {"m2": 0.2, "m3": 0.5, "m4": None, "m5": 0.4}.get
    assert next_hop_within(PEERS, 0.41, SLOW_REJECTS, HOP, value=worth) == "m3"  # its last holder: worth most of those that fit
    assert next_hop_within(PEERS, 0.42, SLOW_REJECTS, HOP, value=worth) == "m2"  # m2 can reject and leave m5 its time: the cascade
    assert next_hop_within(PEERS, 0.41, SLOW_REJECTS, HOP, value={"m2": 0.1, "m5": 0.4}.get) == "m5"  # none worth more than m5
    assert next_hop_within(PEERS, 0.41, SLOW_REJECTS, HOP, value={"m3": 0.5}.get) == "m5"  # m5's worth unknown: the strongest, as before
    assert next_hop_within(PEERS, 0.2, SLOW_REJECTS, HOP, value=worth) == "m5"  # only m5 fits
    assert next_hop_within(PEERS, 0.10, SLOW_REJECTS, HOP, value=worth) is None


def test_unknown_times_count_as_zero_so_routing_is_unchanged_until_measured():
    assert next_hop_within(PEERS, 0.001, lambda _: None, 0.0) == "m2"
    assert next_hop_within([], 100.0, lambda _: None, HOP) is None


def test_a_peer_that_only_rejected_is_expected_to_answer_no_faster_than_it_rejects():
    assert next_hop_within(["m2"], 0.2, times(m2=(0.3, 0.0)), HOP) is None


def test_own_times_are_a_typical_decision_and_a_slow_answer():
    own = OwnTimes("m1")
    assert own.timing() == Timing(agent="m1")
    for k in range(100):
        own.record(k / 100, rejected=True)
    own.record(0.5, rejected=False)
    t = own.timing()
    assert t.decide_s == 0.5 and t.answer_s == 0.5  # the median decision, the p95 answer
    for k in range(100):
        own.record(k / 100, rejected=False)
    assert own.timing().answer_s == 0.94


def test_peer_times_are_bounded_and_never_about_ourselves():
    peers = PeerTimes("me", limit=2)
    peers.heard([Timing(agent="me", decide_s=9), Timing(agent="a"), Timing(agent="b"), None, Timing(agent="c", answer_s=1)])
    assert peers.get("me") is None and peers.get("a") is None
    assert peers.get("c").answer_s == 1 and peers.get("b") is not None


def test_a_result_carries_each_agent_once_within_the_wire_bound():
    many = [Timing(agent=f"a{k}") for k in range(MAX_TRACE)]
    out = with_own([*many, Timing(agent="me", answer_s=5)], Timing(agent="me", answer_s=1))
    assert len(out) == MAX_TRACE and out[-1] == Timing(agent="me", answer_s=1) and [t.agent for t in out].count("me") == 1


def test_bad_latency_arguments_get_a_clear_error():
    with pytest.raises(ValueError, match="target_latency_s must be a positive number"):
        new_query("q", 0.5, 10.0, 4, 100, target_latency_s=0)
    with pytest.raises(ValueError, match="deadline_s must be a positive number"):
        new_query("q", 0.5, float("nan"), 4, 100)


# -- on the in-memory swarm ----------------------------------------------------------------------
def slow_cascade() -> MemorySwarm:
    """small rejects `hard` fast, medium rejects it slowly, large answers it: the whole cascade takes
    about 0.05 + 0.3 + 0.3 s."""
    s = MemorySwarm()
    s.node("small", 0.1, ScriptedBackend({"easy": "small: 1"}, delay_s=0.05))
    s.node("medium", 0.5, ScriptedBackend({"easy": "medium: 1"}, delay_s=0.3))
    s.node("large", 0.9, ScriptedBackend({"easy": "large: 1", "hard": "large: 3"}, delay_s=0.3))
    return s


def decisions(answer) -> list[tuple[str, str]]:
    return [(h.agent, h.decision) for h in answer.trace]


def test_times_ride_on_results_and_pongs():
    async def scenario():
        async with slow_cascade() as s:
            await s.start_all(background=False)
            await s.ask("hard")
            small = s.nodes["small"].latency.peers
            assert small.get("medium").decide_s >= 0.3 and small.get("large").answer_s >= 0.3  # from the result
            s.nodes["small"].latency.peers.forget("large")
            s.nodes["medium"].membership.mark("small", "dead")  # pings go to the one peer left: large
            await s.nodes["medium"].upkeep.ping_round()
            assert s.nodes["medium"].latency.peers.get("large").answer_s >= 0.3  # from a pong

    asyncio.run(scenario())


def test_an_agents_status_shows_its_own_times_as_it_tells_its_peers():
    """1.6: `swarm status` can show what each agent measures of itself (medium only rejected, large only answered)."""
    from swarm.protocol import Status, StatusRequest, encode, expect

    async def scenario():
        async with slow_cascade() as s:
            await s.start_all(background=False)
            await s.ask("hard")
            shown = {n: expect(await s.network.deliver(n, encode(StatusRequest())), Status).timing for n in ("medium", "large")}
            assert shown == {n: s.nodes[n].latency.own.timing() for n in ("medium", "large")}
            assert shown["medium"].decide_s >= 0.3 and shown["medium"].answer_s == 0
            assert shown["large"].answer_s >= 0.3 and shown["large"].decide_s == 0

    asyncio.run(scenario())


def test_a_query_with_too_little_time_for_the_cascade_goes_straight_to_a_stronger_peer_or_is_forced():
    async def scenario():
        async with slow_cascade() as s:
            await s.start_all(background=False)
            assert decisions(await s.ask("hard", deadline_s=30)) == [("small", "reject"), ("medium", "reject"), ("large", "forced")]
            # 0.4 s: not enough for the cascade (0.65 s), enough to skip medium
            a = await s.ask("hard", deadline_s=0.4)
            assert a.agent == "large" and decisions(a) == [("small", "reject"), ("large", "forced")]
            # 0.25 s: no peer can answer after small decides: small answers itself, never fails for lack of time
            a = await s.ask("hard", deadline_s=0.25)
            assert a.agent == "small" and decisions(a) == [("small", "forced")]
            # the soft target routes alike, with the hard limit far away; a target already missed still gets an answer
            a = await s.ask("hard", deadline_s=30, target_latency_s=0.4)
            assert decisions(a) == [("small", "reject"), ("large", "forced")]
            a = await s.ask("hard", target_latency_s=1e-6)
            assert decisions(a) == [("small", "forced")]

    asyncio.run(scenario())


class SlowToDecide(ScriptedBackend):
    """Takes `decide_s` over a generation that may still be a rejection, and no time over one it must answer."""

    def __init__(self, answers: dict[str, str], decide_s: float) -> None:
        super().__init__(answers)
        self.decide_s = decide_s

    async def _generate(self, request):
        if request.allow_reject:
            await asyncio.sleep(self.decide_s)
        return await super()._generate(request)


def test_a_decision_that_outruns_its_share_is_planned_again_and_answered_here_when_no_peer_fits_any_more():
    """small may spend half of the 0.6 s on its decision (0.3 s), but takes 0.45 s; large needs 0.4 s, which
    fitted before the decision and no longer does after it: small answers itself, in time, where it used to
    send the query to large with 0.3 s left and lose it at the deadline."""
    async def scenario():
        async with MemorySwarm() as s:
            s.node("small", 0.1, SlowToDecide({"hard": "small: 3"}, decide_s=0.45))
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}, delay_s=0.4))
            await s.start_all(background=False)
            s.nodes["small"].latency.peers.heard([Timing(agent="large", answer_s=0.4)])
            answer = await s.ask("hard", deadline_s=0.6)
            assert decisions(answer) == [("small", "error"), ("small", "forced")] and answer.text == "small: 3"
            assert "no decision within 50% of the time left" in answer.trace[0].detail
            assert s.nodes["large"].backend.calls == 0
            # With time left for large after the cut decision (0.75 s of 1.5), the query still goes there.
            s.nodes["small"].backend.decide_s = 0.8
            answer = await s.ask("hard", deadline_s=1.5)
            assert decisions(answer) == [("small", "error"), ("large", "forced")] and answer.text == "large: 3"

    asyncio.run(scenario())


def test_decisions_cut_short_by_tight_budgets_never_open_the_circuit_breaker():
    """The breaker is for a hung or broken model: a decision cut off because the query's budget was less
    than twice the agent's usual time says nothing about its model. With a breaker that opens at the first
    failure, four such cuts never open it (it used to open at each; the forced answer closed it again, but
    a query passed on after the cut left it open, and the agent stopped deciding); the hung-backend test in
    test_node.py shows that a timeout with ample time still counts."""
    async def scenario():
        async with MemorySwarm(NodeConfig(breaker_failures=1)) as s:
            s.node("small", 0.1, SlowToDecide({"hard": "small: 3"}, decide_s=0.1))
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}))
            await s.start_all(background=False)
            assert decisions(await s.ask("hard", deadline_s=2.0)) == [("small", "answer")]  # its usual time: 0.1 s
            s.nodes["small"].latency.peers.heard([Timing(agent="large", answer_s=0.2)])
            s.nodes["small"].backend.decide_s = 0.5  # from now on its decisions outlast what each budget leaves them
            for _ in range(4):  # 0.3 s: half of it for the decision (0.15 s, less than twice its usual), large's 0.2 s then no longer fits
                cut = await s.ask("hard", deadline_s=0.3)
                assert decisions(cut) == [("small", "error"), ("small", "forced")] and "no decision within" in cut.trace[0].detail
            assert s.nodes["small"].breaker.trips == 0
            s.nodes["small"].backend.decide_s = 0.1
            assert decisions(await s.ask("hard", deadline_s=2.0)) == [("small", "answer")]

    asyncio.run(scenario())


class SlowReplies(Transport):
    """A transport whose replies to queries take `back_s` to come back (a network on the way back)."""

    def __init__(self, inner: Transport, back_s: float) -> None:
        self.inner, self.back_s = inner, back_s

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        reply = await self.inner.send(peer, data, control)
        if not control:
            await asyncio.sleep(self.back_s)
        return reply


def test_an_answer_of_its_own_that_runs_into_the_deadline_fails_as_a_deadline_not_as_no_capable_agent():
    """small rejects at once, finds large gone, and must answer itself, which takes longer than the time left."""
    from swarm.errors import DeadlineExceeded

    class SlowToAnswer(ScriptedBackend):
        async def _generate(self, request):
            if not request.allow_reject:
                await asyncio.sleep(5.0)
            return await super()._generate(request)

    async def scenario():
        async with MemorySwarm() as s:
            s.node("small", 0.1, SlowToAnswer())
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}))
            await s.start_all(background=False)
            s.network.kill("large")
            with pytest.raises(DeadlineExceeded, match="deadline passed while small answered"):
                await s.ask("hard", deadline_s=0.5)

    asyncio.run(scenario())


def test_a_peer_gets_the_time_left_less_the_way_back_so_its_reply_arrives_in_time():
    """Replies take 0.1 s back, which `hop_overhead_s` allows for. small passes `hard` to medium, which would
    pass it to large (0.7 s to answer) if it had small's 0.85 s: large's answer would reach medium at 0.8 s and
    small at 0.9 s, after small stopped waiting. Given 0.75 s, medium sees that large does not fit and
    answers itself, in time."""
    async def scenario():
        async with MemorySwarm(NodeConfig(hop_overhead_s=0.1)) as s:
            s.node("small", 0.1, ScriptedBackend())
            s.node("medium", 0.5, ScriptedBackend())
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}, delay_s=0.7))
            await s.start_all(background=False)
            for node in s.nodes.values():
                node.transport = SlowReplies(node.transport, 0.1)
            s.nodes["medium"].latency.peers.heard([Timing(agent="large", answer_s=0.7)])
            answer = await s.ask("hard", deadline_s=0.85)
            assert decisions(answer) == [("small", "reject"), ("medium", "forced")]  # no time to decide and pass it on
            assert s.nodes["large"].backend.calls == 0

    asyncio.run(scenario())


def test_blind_pass_goes_to_the_peer_worth_most_that_fits_only_when_it_beats_answering_here():
    from swarm.latency import blind_pass

    worth = {"m2": 0.3, "m3": 0.5, "m4": None, "m5": 0.45}.get
    fast = times(m2=(0.0, 0.1), m3=(0.0, 0.3), m4=(0.0, 0.1), m5=(0.0, 0.1))
    assert blind_pass(PEERS, 1.0, fast, HOP, worth, 0.2) == "m3"  # the most worth among those that fit
    assert blind_pass(PEERS, 0.2, fast, HOP, worth, 0.2) == "m5"  # m3 cannot answer in time; m4's worth is unknown
    assert blind_pass(PEERS, 1.0, fast, HOP, worth, 0.6) is None  # answering here is worth more
    assert blind_pass(PEERS, 1.0, fast, HOP, worth, None) is None  # our own worth unknown: answer here, as before
    assert blind_pass(PEERS, 0.05, fast, HOP, worth, 0.0) is None  # nobody fits


class Rated(SelfAware):
    """SelfAware, with a validation record on which it is right `accuracy` of the time (the accuracy it advertises)."""

    def __init__(self, accuracy: float) -> None:
        super().__init__()
        self.correct = np.array([1.0] * round(accuracy * 10) + [0.0] * (10 - round(accuracy * 10)))

    def curve(self, cost, successor):
        return tuple(value_curve(self.correct, self.correct, cost, list(successor) if successor else None))


def test_with_no_time_to_decide_a_query_goes_unjudged_to_the_peer_worth_most_answering_it():
    """small has no time to decide and pass `hard` on (its slow decision and its answer take 0.6 s); large can
    answer in 0.2 s. At alpha 0.5 large's answer is worth more (0.9 - 0.45 against 0.3 - 0.05): small passes it
    on unjudged. At alpha 0.9 small's is (0.21 against 0.09), and when large cannot answer in time, small answers."""
    async def scenario():
        async with MemorySwarm() as s:
            s.node("small", 0.1, ScriptedBackend({"hard": "small: 3"}), Rated(0.3))
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}, delay_s=0.2), Rated(0.9))
            await s.start_all(background=False)
            small = s.nodes["small"]
            small.membership.merge_all([s.nodes["large"].membership.self_entry], spread=False)  # what gossip brings
            assert (small.membership.self_entry.accuracy, small.membership.get("large").accuracy) == (0.3, 0.9)
            for _ in range(5):
                small.latency.own.record(0.4, rejected=True)
                small.latency.own.record(0.2, rejected=False)
            small.latency.peers.heard([Timing(agent="large", answer_s=0.2)])
            answer = await s.ask("hard", alpha=0.5, deadline_s=0.5)
            assert decisions(answer) == [("small", "reject"), ("large", "forced")] and "unjudged" in answer.trace[0].detail
            assert small.backend.calls == 0  # it never asked its model
            assert decisions(await s.ask("hard", alpha=0.9, deadline_s=0.5)) == [("small", "forced")]
            assert decisions(await s.ask("hard", alpha=0.5, deadline_s=0.2)) == [("small", "forced")]

    asyncio.run(scenario())


def test_an_agent_may_take_its_usual_decision_time_when_half_the_time_left_is_too_little_but_never_hang():
    from swarm.latency import decision_limit

    own, peer = Timing(agent="m1", decide_s=0.3, answer_s=0.3), Timing(agent="m5", answer_s=0.02)
    assert decision_limit(10.0, 0.5, own, peer, HOP) == 5.0  # half is plenty
    assert decision_limit(0.9, 0.5, own, peer, HOP) == pytest.approx(0.6)  # twice its usual 0.3 s; m5 still fits after
    assert decision_limit(0.5, 0.5, own, peer, HOP) == pytest.approx(0.47)  # all but m5's need
    assert decision_limit(0.9, 0.5, own, None, HOP) == 0.45  # the peer's need unknown: the share
    assert decision_limit(0.9, 0.5, Timing(agent="m1"), peer, HOP) == 0.45  # its own usual unknown: the share


def test_an_agent_decides_only_when_even_a_slow_decision_leaves_it_time_to_answer():
    from swarm.latency import may_decide

    own = Timing(agent="m1", decide_s=0.05, decide_slow_s=0.3, answer_s=0.2)
    assert may_decide(own, 0.5) and not may_decide(own, 0.49) and may_decide(None, 0.0)
    assert next_hop_within(PEERS, 0.49, SLOW_REJECTS, HOP, own=own) is None  # m5 would fit, but a slow decision would not leave m1 its answer
    assert next_hop_within(PEERS, 0.5, SLOW_REJECTS, HOP, own=own) == "m2"  # 0.45 after a typical decision


def test_a_query_short_of_time_skips_to_the_peer_worth_most_answering_it_not_the_strongest():
    """small rejects with 0.5 s left. medium answers in 0.15 s but rejects slowly (0.3 s), so it could not
    reject and still leave large (0.35 s) its time: whoever gets the query holds it last. At alpha 0.5
    medium's answer is worth more (0.8 - 0.25 against 0.9 - 0.45): it gets the query, not large. At alpha
    0.2 large's is (0.72 against 0.7)."""
    async def scenario():
        async with MemorySwarm() as s:
            s.node("small", 0.1, ScriptedBackend({"hard": "I don't know!"}), Rated(0.3))
            s.node("medium", 0.5, ScriptedBackend({"hard": "medium: 3"}), Rated(0.8))
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}), Rated(0.9))
            await s.start_all(background=False)
            small = s.nodes["small"]
            small.membership.merge_all([s.nodes[n].membership.self_entry for n in ("medium", "large")], spread=False)
            slow = [Timing(agent="medium", decide_s=0.3, answer_s=0.15), Timing(agent="large", answer_s=0.35)]
            small.latency.peers.heard(slow)
            assert decisions(await s.ask("hard", alpha=0.5, deadline_s=0.5)) == [("small", "reject"), ("medium", "answer")]
            small.latency.peers.heard(slow)  # each result brought the answerer's real (fast) times
            assert decisions(await s.ask("hard", alpha=0.2, deadline_s=0.5)) == [("small", "reject"), ("large", "forced")]
            small.latency.peers.heard(slow)
            assert decisions(await s.ask("hard", alpha=0.5, deadline_s=30)) == [("small", "reject"), ("medium", "answer")]  # the cascade
            assert s.nodes["large"].backend.calls == 1

    asyncio.run(scenario())


def test_a_peer_that_can_decide_on_its_prefill_in_time_is_passed_through_not_skipped():
    """1.7: m2's usual decision (0.3 s) leaves m5 no time, its prefill-only one (0.02 s, p95 0.03 s) does."""
    quick = {**{n: Timing(agent=n, decide_s=0.3, decide_slow_s=0.3) for n in ("m3", "m4")},
             "m2": Timing(agent="m2", decide_s=0.3, decide_slow_s=0.3, quick_s=0.02, quick_slow_s=0.03),
             "m5": Timing(agent="m5", answer_s=0.1)}
    assert next_hop_within(PEERS, 0.41, quick.get, HOP) == "m2"
    assert next_hop_within(PEERS, 0.13, quick.get, HOP) == "m5"  # 0.02 + 0.01 + 0.11 > 0.13: not even a quick one fits
    unmeasured = {**quick, "m2": Timing(agent="m2", decide_s=0.3, decide_slow_s=0.3)}
    assert next_hop_within(PEERS, 0.41, unmeasured.get, HOP) == "m5"  # never measured: never assumed quick


def test_quick_times_are_advertised_once_measured():
    own = OwnTimes("m1")
    own.record(0.4, rejected=True)
    assert (own.timing().quick_s, own.timing().quick_slow_s) == (0, 0) and own.quick_timing() is None
    for k in range(1, 21):
        own.record(k / 1000, rejected=True, on_prefill=True)
    t = own.timing()
    assert (t.quick_s, t.quick_slow_s) == (0.011, 0.02) and t.decide_s == 0.011  # the prefill-only ones count as decisions too
    assert own.quick_timing() == Timing(agent="m1", decide_s=0.011, decide_slow_s=0.02, answer_s=t.answer_s)


def test_a_query_passed_on_unjudged_goes_to_a_peer_that_can_still_decide_when_its_cascade_is_worth_more():
    """small has no time to decide; mid (0.6 right, cost 0.4) can decide in 0.01 s and still leave large its
    0.2 s. Unjudged, large's answer is worth more than mid's (0.45 against 0.4), but a query handed to mid is
    worth what mid's curve advertises (it answers what it knows, passes on the rest: 0.66 at alpha 0.5), so
    small passes it to mid. Had mid no time left to decide and pass on, it would go to large as before."""
    from swarm.assess.curves import at
    from swarm.latency import handed_value

    async def scenario():
        async with MemorySwarm() as s:
            s.node("small", 0.1, ScriptedBackend({"hard": "small: 3"}), Rated(0.3))
            s.node("mid", 0.4, ScriptedBackend({"hard": "mid: 3"}), Rated(0.6))
            s.node("large", 0.9, ScriptedBackend({"hard": "large: 3"}, delay_s=0.2), Rated(0.9))
            await s.start_all(background=False)
            small, mid = s.nodes["small"], s.nodes["mid"]
            mid.membership.merge_all([s.nodes["large"].membership.self_entry], spread=False)  # what gossip brings
            mid.advertise_curve()
            small.membership.merge_all([s.nodes[n].membership.self_entry for n in ("mid", "large")], spread=False)
            assert round(at(small.membership.get("mid").curve, 0.5), 2) == 0.66
            for _ in range(5):
                small.latency.own.record(0.4, rejected=True)
                small.latency.own.record(0.2, rejected=False)
            small.latency.peers.heard([Timing(agent="mid", decide_s=0.01, decide_slow_s=0.01, answer_s=0.05),
                                       Timing(agent="large", answer_s=0.2)])
            answer = await s.ask("hard", alpha=0.5, deadline_s=0.5)
            assert decisions(answer) == [("small", "reject"), ("mid", "answer")] and "unjudged to mid" in answer.trace[0].detail
            slow_mid = {"mid": Timing(agent="mid", decide_s=0.3, decide_slow_s=0.3, answer_s=0.05),
                        "large": Timing(agent="large", answer_s=0.2)}.get  # a decision at mid would leave large no time
            worth = handed_value(["mid", "large"], 0.45, slow_mid, HOP, {"mid": 0.4, "large": 0.45}.get, {"mid": 0.66, "large": 0.45}.get)
            assert (worth("mid"), worth("large")) == (0.4, 0.45)
            quick_mid = {"mid": Timing(agent="mid", decide_s=0.3, decide_slow_s=0.3, answer_s=0.05, quick_s=0.01, quick_slow_s=0.01),
                         "large": Timing(agent="large", answer_s=0.2)}.get  # ... unless it can decide on its prefill
            worth = handed_value(["mid", "large"], 0.45, quick_mid, HOP, {"mid": 0.4, "large": 0.45}.get, {"mid": 0.66, "large": 0.45}.get)
            assert worth("mid") == 0.66

    asyncio.run(scenario())
