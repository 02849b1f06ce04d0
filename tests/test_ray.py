"""Integration tests on a real local Ray cluster: one async actor per agent, routing peer to peer."""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from pathlib import Path

import pytest
import ray

import swarm
from swarm.backends.replay import ReplayTable
from swarm.protocol import PROTOCOL_VERSION, Query, Result, StatusRequest, decode, encode
from swarm.topology import parse_topology

pytestmark = pytest.mark.ray
DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"
TABLE = ReplayTable.load(DATA / "arith-replay.jsonl")
QUESTIONS = TABLE.queries()
FAST_FAILURE_DETECTION = "gossip_interval_s: 0.1, ping_interval_s: 0.2, ping_timeout_s: 0.5, suspect_timeout_s: 0.5"


def cascade(name: str, latency_ms: float = 0, agents: int = 5, defaults: str = FAST_FAILURE_DETECTION, reject_ms: float = 0) -> swarm.Topology:
    rows = "\n".join(
        f"  - {{name: m{i}, cost: {0.1 + 0.2 * (i - 1):.1f}, "
        f"backend: {{kind: replay, table: arith-replay.jsonl, latency_ms: {latency_ms}, reject_latency_ms: {reject_ms}}}"
        + (", policy: {kind: always_answer}}" if i == agents else "}")
        for i in range(1, agents + 1)
    )
    return parse_topology(f"name: {name}\ndefaults: {{deadline_s: 30, {defaults}}}\nagents:\n{rows}\n", base_dir=DATA)


@pytest.fixture
def launched(ray_cluster, request):
    """Launch topologies and always shut them down, whatever the test did."""
    running: list[swarm.Swarm] = []

    def _launch(topology) -> swarm.Swarm:
        s = swarm.launch(topology)
        running.append(s)
        return s

    yield _launch
    for s in running:
        s.shutdown()


def in_background(fn, *args, **kwargs):
    """Run a blocking call (a stream of queries) in a thread while the test changes the swarm."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("out", fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, box


def answers_only(outcomes):
    return [o for o in outcomes if isinstance(o, swarm.Answer)]


def test_cascade_end_to_end(launched):
    s = launched(cascade("e2e"))
    a = s.ask("What is 17 + 25?", scenario="balance")
    assert a.text == "The answer is: 42" and a.agent == "m1" and a.hops == 0
    assert [h.decision for h in a.trace] == ["answer"]

    outcomes = s.ask_many(QUESTIONS[:200], scenario="balance", concurrency=32)
    answers = answers_only(outcomes)
    assert len(answers) == 200
    for ans in answers:  # the path is the cascade order up to the agent that answered
        path = ans.path
        assert path == [f"m{i}" for i in range(1, len(path) + 1)] and path[-1] == ans.agent
        assert all(h.decision == "reject" for h in ans.trace[:-1])
        assert ans.trace[-1].decision in ("answer", "forced")
    by_agent = collections.Counter(a.agent for a in answers)
    assert set(by_agent) == {"m1", "m2", "m3", "m4", "m5"}, by_agent

    # Cost First sends more work to the cheap end than Performance First (answer when p > (1-alpha)^0.5).
    cheap = lambda outs: sum(a.agent in ("m1", "m2") for a in answers_only(outs))  # noqa: E731
    assert cheap(s.ask_many(QUESTIONS[:200], scenario="cost_first")) > cheap(s.ask_many(QUESTIONS[:200], scenario="performance_first"))

    status = {st.name: st for st in s.status()}
    assert status["m1"].received >= 601 and status["m5"].rejected == 0 and all(st.state == "alive" for st in status.values())
    # m1 holds every query until it comes back, so its latency covers the whole path.
    assert 0 < status["m2"].p50_s <= status["m1"].p95_s and status["m1"].p50_s <= status["m1"].p95_s


def test_mesh_with_cycles_never_loops(launched):
    s = launched(Path(__file__).resolve().parent.parent / "topologies" / "mesh-replay.yaml")
    outcomes = s.ask_many(QUESTIONS[:150], scenario="performance_first")
    answers = answers_only(outcomes)
    assert len(answers) == 150
    for a in answers:
        assert len(a.path) == len(set(a.path)), a.path
        costs = [s.topology.agent(n).cost for n in a.path]
        assert costs == sorted(costs)  # always towards a stronger agent
    assert max(a.hops for a in answers) >= 2


def test_add_agent_under_load(launched):
    s = launched(cascade("grow", latency_ms=2, agents=3))
    thread, box = in_background(s.ask_many, QUESTIONS * 2, concurrency=16)
    time.sleep(1.0)
    newcomer = {"name": "m2b", "cost": 0.2, "backend": {"kind": "replay", "table": str(DATA / "arith-replay.jsonl"), "model": "m4"}}
    s.add_agent(newcomer)
    thread.join(timeout=120)
    outcomes = box["out"]
    assert len(outcomes) == 1000 and len(answers_only(outcomes)) == 1000
    # Once gossip spread the join, queries m1 rejected went to the newcomer (the next stronger peer).
    later = s.ask_many(QUESTIONS[:200])
    assert any(a.agent == "m2b" for a in answers_only(later))
    assert {st.name for st in s.status()} == {"m1", "m2", "m2b", "m3"}


def test_remove_agent_under_load(launched):
    s = launched(cascade("shrink", latency_ms=2))
    thread, box = in_background(s.ask_many, QUESTIONS * 2, concurrency=32)
    time.sleep(1.0)
    assert s.remove_agent("m3") == 0  # it drained its in-flight queries before it exited, within drain_timeout_s
    thread.join(timeout=120)
    outcomes = box["out"]
    assert len(answers_only(outcomes)) == 1000  # nothing lost while m3 drained and left
    late = s.ask_many(QUESTIONS[:200])
    assert all("m3" not in a.path for a in answers_only(late)) and len(answers_only(late)) == 200
    assert "m3" not in {st.name for st in s.status()}


def duplicate_answers(s: swarm.Swarm) -> int:
    """Query ids answered by more than one execution, over the live agents of `s`."""
    counts = collections.Counter(i for h in s._handles.values() for i in ray.get(h.answered.remote()))
    return sum(n - 1 for n in counts.values() if n > 1)


def test_kill_agent_mid_flight_loses_nothing(launched):
    s = launched(cascade("crash", latency_ms=200, reject_ms=50))
    queries = QUESTIONS[:500]
    thread, box = in_background(s.ask_many, queries, concurrency=100)
    time.sleep(1.0)
    assert thread.is_alive()
    s.kill_agent("m3")
    thread.join(timeout=180)
    outcomes = box["out"]
    assert len(outcomes) == 500 and [o.query_id for o in outcomes] == [o.query_id for o in outcomes if o is not None]
    answers = answers_only(outcomes)
    # m5 always answers, so every query is answered: not one error
    assert len(answers) == 500, collections.Counter(f"{type(o).__name__}: {str(o)[-60:]}" for o in outcomes if not isinstance(o, swarm.Answer))
    assert duplicate_answers(s) == 0
    assert any(h.decision == "unreachable" and h.agent == "m3" for a in answers for h in a.trace)
    after = s.ask_many(QUESTIONS[:100])
    assert len(answers_only(after)) == 100 and all("m3" not in a.path for a in answers_only(after))


def test_dead_entry_agent_client_retries_next_entry(launched):
    s = launched(cascade("entry", agents=3))
    s.kill_agent("m1")
    a = s.ask("What is 17 + 25?")
    assert a.entry == "m2" and a.agent in ("m2", "m3")


def test_a_query_with_too_little_time_for_the_cascade_is_answered_in_time_by_a_stronger_peer_or_forced(launched):
    """Deadline mode (swarm.latency): m1..m4 take 0.3 s to reject these queries, m5 answers in 0.02 s, so the
    whole cascade takes 1.2 s. With less time, agents skip the peers that cannot finish in time, and an agent
    with no such peer left answers itself: never a deadline failure while an agent could answer."""
    s = launched(cascade("deadline", latency_ms=20, reject_ms=300))
    hard = [q for q in QUESTIONS if all(TABLE.entry(q, f"m{i}").p <= 0.7 for i in range(1, 5))]
    for q in hard[:2]:  # unbounded: the whole cascade, so every agent measures its times and m1 hears them in the results
        assert s.ask(q).path == ["m1", "m2", "m3", "m4", "m5"]

    def route(deadline_s: float, q: str) -> list[tuple[str, str]]:
        a = s.ask(q, deadline_s=deadline_s)  # a deadline failure would raise DeadlineExceeded
        return [(h.agent, h.decision) for h in a.trace]

    assert route(1.1, hard[2]) == [("m1", "reject"), ("m2", "reject"), ("m5", "forced")]  # m3 and m4 skipped
    assert route(0.75, hard[3]) == [("m1", "reject"), ("m5", "forced")]  # straight to the strongest
    assert route(0.25, hard[4]) == [("m1", "forced")]  # no time to decide and pass it on: m1 answers


def test_hung_agent_is_detected_and_routed_around(launched):
    s = launched(cascade("hung", agents=3))
    hard = [row["query"] for row in TABLE.rows if row["difficulty"] == 3][:20]  # m1 rejects these, m2 answers
    s._handle("m2").freeze.remote(8.0)  # m2's event loop is blocked: alive to Ray, dead to the swarm
    time.sleep(0.3)
    # Each query's deadline (6 s) ends before m2 wakes (8 s): a query that waited for m2 fails with
    # deadline_exceeded, so all answered means all routed around m2 while it was still frozen.
    outcomes = s.ask_many(hard, scenario="balance", deadline_s=6)
    answers = answers_only(outcomes)
    assert len(answers) == 20 and all(a.agent == "m3" for a in answers), [o for o in outcomes if o not in answers][:3]
    time.sleep(8)


def test_an_overloaded_agent_is_not_declared_dead(launched):
    """m2 runs 2 queries at a time (its actor's concurrency limit) and 20 queue for it, 0.6 s each:
    pings travel on the control lane, which the queue cannot starve, so m2 is never suspected and
    no query it holds is executed again at m3."""
    rows = "\n".join([
        "  - {name: m1, cost: 0.1, backend: {kind: replay, table: arith-replay.jsonl}}",
        "  - {name: m2, cost: 0.3, max_concurrency: 2, backend: {kind: replay, table: arith-replay.jsonl, latency_ms: 600}, policy: {kind: always_answer}}",
        "  - {name: m3, cost: 0.5, backend: {kind: replay, table: arith-replay.jsonl}, policy: {kind: always_answer}}",
    ])
    s = launched(parse_topology(f"name: overload\ndefaults: {{deadline_s: 60, {FAST_FAILURE_DETECTION}}}\nagents:\n{rows}\n", base_dir=DATA))
    hard = [row["query"] for row in TABLE.rows if row["difficulty"] == 3][:20]  # m1 rejects these
    outcomes = s.ask_many(hard, scenario="balance")
    answers = answers_only(outcomes)
    assert len(answers) == 20 and all(a.agent == "m2" for a in answers), [(h.agent, h.decision, h.detail) for h in answers[0].trace]
    assert duplicate_answers(s) == 0
    for st in s.status():
        assert st.state == "alive"
    views = [ray.get(h.control.remote(encode(StatusRequest()))) for h in s._handles.values()]
    assert all(m.incarnation == 0 and m.state == "alive" for v in views for m in decode(v)[1].members if m.name == "m2")


def test_malformed_and_oversize_messages_get_error_replies(launched):
    s = launched(cascade("wire", agents=2))
    actor = s._handle("m1")
    for junk, code in [(b"\xc1junk", "malformed"), (b"\x92\x01\x02", "malformed"), (b"x" * (5 * 1024 * 1024), "oversize")]:
        _, reply = decode(ray.get(actor.handle.remote(junk)))
        assert reply.code == code
    future = encode(Query(query_id="q", text="hi", alpha=0.5, budget_s=5, max_hops=4))
    ours = bytes([0x92, *PROTOCOL_VERSION])  # the version as msgpack writes it: a 2-element array of small ints
    assert ours in future
    future = future.replace(ours, b"\x92\x07\x00")  # protocol version 7.0
    assert decode(ray.get(actor.handle.remote(future)))[1].code == "unsupported_version"
    # and the agent keeps serving
    ok = ray.get(actor.handle.remote(encode(Query(query_id="q2", text="What is 17 + 25?", alpha=0.5, budget_s=5, max_hops=4))))
    assert isinstance(decode(ok)[1], Result) and decode(ok)[1].ok
    with pytest.raises(swarm.QueryTooLarge, match="exceeds this swarm's limit"):
        s.ask("x" * 10_000_000)


def test_attach_from_another_process(launched, tmp_path):
    import subprocess
    import sys

    s = launched(cascade("shared", agents=2))
    address = ray.get_runtime_context().gcs_address
    cli = [sys.executable, "-m", "swarm.cli"]
    ask = subprocess.run([*cli, "ask", "shared", "What is 17 + 25?", "--address", address], capture_output=True, text=True, timeout=120)
    assert ask.returncode == 0, ask.stderr
    assert "The answer is: 42" in ask.stdout and "answered by m1" in ask.stdout
    status = subprocess.run([*cli, "status", "shared", "--address", address, "--json"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert '"name": "m2"' in status.stdout and '"decide_s"' in status.stdout
    table = subprocess.run([*cli, "status", "shared", "--address", address], capture_output=True, text=True, timeout=120)
    assert table.returncode == 0 and "decide ms" in table.stdout.splitlines()[0], table.stderr
    timed = subprocess.run([*cli, "ask", "shared", "What is 17 + 25?", "--address", address, "--deadline-s", "20", "--target-latency-s", "5",
                            "--json"], capture_output=True, text=True, timeout=120)
    assert timed.returncode == 0 and json.loads(timed.stdout)["agent"] == "m1", timed.stderr
    late = subprocess.run([*cli, "ask", "shared", "What is 17 + 25?", "--address", address, "--deadline-s", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert late.returncode == 1 and "deadline_s must be a positive number" in late.stderr and "Traceback" not in late.stderr
    newcomer = tmp_path / "m3.yaml"
    newcomer.write_text(f"name: m3\ncost: 0.9\nbackend: {{kind: replay, table: {DATA / 'arith-replay.jsonl'}}}\npolicy: {{kind: always_answer}}\n")
    added = subprocess.run([*cli, "add", "shared", str(newcomer), "--address", address], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert "m3" in {st.name for st in s.status()}
    removed = subprocess.run([*cli, "remove", "shared", "m3", "--address", address], capture_output=True, text=True, timeout=120)
    assert removed.returncode == 0 and "left" in removed.stdout, removed.stderr
    assert "m3" not in {st.name for st in s.status()}
    missing = subprocess.run([*cli, "ask", "nope", "hi", "--address", address], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "no swarm named 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    assert s.entries() == ["m1", "m2"]


def test_ask_async_never_blocks_the_event_loop(launched, monkeypatch):
    # A web front end awaits answers on its event loop: ask_async must refresh its membership view
    # by awaiting, never with a blocking ray.get (which `entries()` would do when the view is stale).
    import asyncio

    s = launched(cascade("async-ask", agents=3))
    real_get = ray.get

    def get_off_the_loop(*args, **kwargs):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return real_get(*args, **kwargs)
        raise AssertionError("ray.get called on a running event loop")

    monkeypatch.setattr(ray, "get", get_off_the_loop)

    async def ask_all():
        s._client._refreshed_at = -math.inf  # a stale view, as after a quiet spell
        answers = await asyncio.gather(*(s.ask_async(q, scenario="balance") for q in QUESTIONS[:20]))
        await s._client._refreshing  # the refresh the stale view started, awaited too
        return answers

    answers = asyncio.run(ask_all())
    assert len(answers) == 20 and all(isinstance(a, swarm.Answer) for a in answers)
    assert {a.entry for a in answers} == {"m1"} and s._client._refreshed_at > 0


def test_ask_async_gives_up_on_a_wedged_entry_agent_at_the_deadline(launched):
    """An entry agent whose event loop is blocked never replies: ask_async raises DeadlineExceeded
    at the query's deadline plus the client's grace, not when the agent wakes up."""
    import asyncio

    from swarm.entry import GRACE_S as _GRACE_S

    s = launched(cascade("wedged", agents=2))
    s._handle("m1").freeze.remote(_GRACE_S + 6.0)
    time.sleep(0.3)
    began = time.monotonic()
    with pytest.raises(swarm.DeadlineExceeded, match="no reply from entry agent m1"):
        asyncio.run(s.ask_async("What is 17 + 25?", deadline_s=0.5))
    assert time.monotonic() - began < _GRACE_S + 3.0
    time.sleep(max(0.0, began + _GRACE_S + 6.0 - time.monotonic()))  # let m1 wake before teardown


def test_a_sync_ask_with_a_stale_view_still_ends_by_its_deadline(launched):
    """A stale view is refreshed in the background: a wedged cheapest agent (the first one asked for
    the view, and the entry) does not hold a sync ask past its deadline plus the client's grace."""
    from swarm.entry import GRACE_S

    s = launched(cascade("wedged-sync", agents=2))
    s._handle("m1").freeze.remote(GRACE_S + 8.0)
    time.sleep(0.3)
    s._client._refreshed_at = -math.inf  # stale: this ask starts a refresh, which asks the wedged m1 first
    began = time.monotonic()
    with pytest.raises(swarm.DeadlineExceeded, match="no reply from entry agent m1"):
        s.ask("What is 17 + 25?", deadline_s=0.5)
    assert time.monotonic() - began < 0.5 + GRACE_S + 1.0
    time.sleep(max(0.0, began + GRACE_S + 8.0 - time.monotonic()))  # let m1 wake before teardown
