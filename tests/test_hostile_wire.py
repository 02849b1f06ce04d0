"""Hostile wire messages: each gets a small error reply within bounded time and memory, hurts no
agent, and a normal query is answered right after. The corpus is sent to a real agent actor on a
local Ray cluster; the bounds on work are measured in-process as well (tracemalloc)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import msgpack
import psutil
import pytest
import ray

import swarm
from swarm.client import Answer
from swarm.errors import QueryError
from swarm.node import NodeConfig
from swarm.protocol import MAX_MESSAGE_BYTES, Error, Query, Result, StatusRequest, decode, encode
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.topology import parse_topology
from test_node import run

QUERY = {"query_id": "q", "text": "What is 17 + 25?", "alpha": 0.5, "budget_s": 5.0, "max_hops": 4}
FULL = MAX_MESSAGE_BYTES - 256  # room for the envelope around a payload


def _env(body: object, type_: object = "query", v: object = (1, 2), id_: object = "m1") -> bytes:
    return msgpack.packb({"v": list(v) if isinstance(v, tuple) else v, "type": type_, "id": id_, "body": body}, use_bin_type=True)


# name -> (bytes, the error code the receiver must answer with)
CORPUS: dict[str, tuple[bytes, str]] = {
    "visited_of_four_million_empty_maps": (_env({**QUERY, "visited": [{}] * FULL}), "malformed"),
    "forty_lists_of_100k_empty_maps": (_env({**QUERY, "junk": [[{}] * 100_000] * 40}), "malformed"),
    "unknown_key_of_a_million_lists": (_env({**QUERY, "junk": [[]] * 1_000_000}), "malformed"),
    "map_of_half_a_million_keys": (_env({**QUERY, "junk": {i: 0 for i in range(500_000)}}), "malformed"),
    "nested_a_million_deep": (b"\x91" * FULL + b"\xc0", "malformed"),
    "version_of_a_million_items": (_env(QUERY, v=[1] * 1_000_000), "malformed"),
    "type_of_three_megabytes": (_env(QUERY, type_="q" * 3_000_000), "unknown_type"),
    "id_of_three_megabytes": (_env(QUERY, id_="i" * 3_000_000), "malformed"),
    "ext_type": (_env({**QUERY, "text": msgpack.ExtType(5, b"x" * 1000)}), "malformed"),
    "max_hops_of_ten_to_the_18": (_env({**QUERY, "max_hops": 10**18}), "invalid_body"),
    "max_hops_past_64_bits": (_env({**QUERY, "max_hops": 2**64 - 1}), "invalid_body"),
    "budget_nan": (_env({**QUERY, "budget_s": float("nan")}), "invalid_body"),
    "text_a_map": (_env({**QUERY, "text": {"a": 1}}), "invalid_body"),
    "alpha_a_string_of_a_megabyte": (_env({**QUERY, "alpha": "9" * 1_000_000}), "invalid_body"),
    "visited_of_300_names": (_env({**QUERY, "visited": ["a"] * 300}), "invalid_body"),
    # every item of a long list wrong: one error, not one per item (pydantic's fail_fast)
    "gossip_of_4000_members_with_1000_bad_links_each": (_env({"digest": "d", "updates": [{"name": "a", "cost": 1, "links": [1] * 1000}] * 4000},
                                                            "gossip"), "invalid_body"),
    "view_of_80000_members_each_wrong_six_ways": (_env({"digest": "d", "members": [{"name": 1, "cost": "x", "state": "zz", "incarnation": -1,
                                                                                   "links": "q", "curve": "r"}] * 80_000}, "view"), "invalid_body"),
    "visited_of_100k_numbers": (_env({**QUERY, "visited": [7] * 100_000}), "invalid_body"),
    "invalid_utf8_text": (_env(QUERY).replace(b"What is", b"\xff\xfe\xfd is"), "malformed"),
    "truncated": (_env(QUERY)[:-3], "malformed"),
    "five_megabytes": (b"\x00" * (5 * 1024 * 1024), "oversize"),
}


def test_every_hostile_envelope_is_refused_with_bounded_work() -> None:
    """In-process: each refusal takes well under a second and a few dozen MB at most, and its
    message quotes at most a few dozen characters of what was sent."""
    for name, (data, code) in CORPUS.items():
        began = time.perf_counter()
        outcome, message = _refusal(data)
        seconds = time.perf_counter() - began
        tracemalloc.start()
        _refusal(data)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert outcome == code, (name, outcome, message)
        assert seconds < 1.0, (name, seconds)
        assert peak < 64 * 2**20, (name, peak)
        assert len(message) < 400, (name, len(message))


def test_refusing_the_whole_corpus_needs_little_memory() -> None:
    """tracemalloc does not see pydantic-core's own allocations: the process's peak RSS does. A
    fresh interpreter builds the corpus, then refuses every message in it; its peak may grow by
    at most 128 MB (the worst message used to take 4.6 GB)."""
    script = (
        "import resource, sys; sys.path.insert(0, sys.argv[1]);"
        "from test_hostile_wire import CORPUS, _refusal;"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
        "codes = [_refusal(data)[0] for data, _ in CORPUS.values()];"
        "assert codes == [code for _, code in CORPUS.values()], codes;"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) < 128 * 1024, f"peak RSS grew by {int(done.stdout) // 1024} MB"


def _refusal(data: bytes) -> tuple[str, str]:
    try:
        decode(data)
        return "decoded", ""
    except swarm.ProtocolError as exc:
        return exc.code, exc.message


def _table(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def hostile(ray_cluster, tmp_path_factory):
    """Two replay agents: m1 answers 17 + 25 with a lone surrogate in it and rejects the huge one,
    which m2 answers with six megabytes."""
    folder = tmp_path_factory.mktemp("hostile-wire")
    _table(folder / "table.jsonl", [
        {"query": "What is 17 + 25?", "agents": {"m1": {"answer": "The answer is: 42 \ud800", "correct": True, "p": 1.0},
                                                  "m2": {"answer": "42", "correct": True, "p": 1.0}}},
        {"query": "Say a lot", "agents": {"m1": {"answer": "no", "correct": False, "p": 0.0},
                                           "m2": {"answer": "x" * (6 * 2**20), "correct": True, "p": 1.0}}},
    ])
    topology = parse_topology(
        "name: hostile-wire\ndefaults: {deadline_s: 20}\nagents:\n"
        "  - {name: m1, cost: 0.1, backend: {kind: replay, table: table.jsonl}}\n"
        "  - {name: m2, cost: 0.9, backend: {kind: replay, table: table.jsonl}}\n", base_dir=folder)
    s = swarm.launch(topology)
    yield s
    s.shutdown()


def _rss(s: swarm.Swarm, agent: str) -> int:
    pid = ray.get(s._handle(agent).describe.remote())["pid"]
    return psutil.Process(pid).memory_info().rss


def test_hostile_envelopes_sent_to_a_real_agent(hostile):
    actor = hostile._handle("m1")
    rss_before = _rss(hostile, "m1")
    for name, (data, code) in CORPUS.items():
        began = time.monotonic()
        reply = ray.get(actor.handle.remote(data), timeout=30)
        seconds = time.monotonic() - began
        _, body = decode(reply)
        assert isinstance(body, Error) and body.code == code, (name, body)
        assert len(reply) < 2048, (name, len(reply))  # small replies, whatever was sent
        assert seconds < 2.0, (name, seconds)
    # no agent harmed: both alive in each other's view, m1 grew by less than the corpus it read, and it answers
    assert all(st.state == "alive" for st in hostile.status())
    assert _rss(hostile, "m1") - rss_before < 256 * 2**20
    ok = decode(ray.get(actor.handle.remote(encode(Query(**{**QUERY, "query_id": "after"})))))[1]
    assert isinstance(ok, Result) and ok.ok and ok.agent == "m1"


def test_a_lone_surrogate_from_a_backend_reaches_the_client_as_a_replacement_character(hostile):
    answer = hostile.ask("What is 17 + 25?")
    assert answer.agent == "m1" and answer.text == "The answer is: 42 \ufffd"


def test_an_answer_too_large_to_send_is_refused_by_its_sender_and_nobody_is_suspected(hostile):
    """m2's six-megabyte answer cannot travel: m2 says so instead of sending it, m1 (which rejected)
    answers itself, and m2 stays alive in m1's view (it did nothing wrong on the wire)."""
    answer = hostile.ask("Say a lot")
    assert answer.agent == "m1" and answer.text == "no"
    # m2 generated its answer (forced: the last in line), could not send it, and said so
    assert [(h.agent, h.decision) for h in answer.trace] == [("m1", "reject"), ("m2", "forced"), ("m2", "error"), ("m1", "forced")]
    assert "too large" in answer.trace[2].detail
    time.sleep(1.0)  # a gossip round or two: a suspicion would show by now
    assert all(st.state == "alive" for st in hostile.status())
    assert hostile.ask("What is 17 + 25?").agent == "m1"


# -- the same rules, in memory where a fault is easier to script ---------------------------------


def test_a_query_too_large_to_pass_on_is_answered_here_and_penalises_no_peer() -> None:
    """A query that fits the wire at the entry but not once the entry adds its own fields: the
    entry answers it itself, and does not suspect the peer it could not send it to."""
    def asked(text: str) -> Query:
        return Query(query_id="big", text=text, alpha=0.5, budget_s=5, max_hops=4)

    text = "y" * (MAX_MESSAGE_BYTES - len(encode(asked(""))) - 8)  # the client's message fits with a few bytes to spare
    assert len(encode(asked(text))) <= MAX_MESSAGE_BYTES

    async def scenario() -> None:
        config = NodeConfig(max_query_chars=MAX_MESSAGE_BYTES)
        async with MemorySwarm(config, max_query_chars=MAX_MESSAGE_BYTES) as s:
            s.node("a", 0.1, ScriptedBackend({"other": "a"}))
            s.node("b", 0.9, ScriptedBackend({text: "b"}))
            await s.start_all(background=False)
            reply = decode(await s.network.deliver("a", encode(asked(text))))[1]
            assert isinstance(reply, Result) and reply.ok and reply.agent == "a", reply
            assert [(h.agent, h.decision) for h in reply.trace] == [("a", "reject"), ("a", "error"), ("a", "forced")]
            assert s.nodes["a"].membership.get("b").state == "alive"
            assert s.nodes["b"].backend.calls == 0

    run(scenario, timeout=20)


def test_budget_and_hops_are_cut_to_the_swarms_limits() -> None:
    """A sender asking for 1e308 s and 64 hops gets this swarm's 0.5 s and 2 hops: the entry's hung
    model is given up after half of 0.5 s (not half of 1e308), and b, the second and last agent
    allowed, must answer; c is never asked."""
    async def scenario() -> None:
        async with MemorySwarm(NodeConfig(max_budget_s=0.5, max_hops=2)) as s:
            hung = ScriptedBackend({"q": "a"})
            hung.hang = True
            s.node("a", 0.1, hung)
            s.node("b", 0.5, ScriptedBackend())
            s.node("c", 0.9, ScriptedBackend({"q": "c"}))
            await s.start_all(background=False)
            began = time.monotonic()
            raw = await s.network.deliver("a", encode(Query(query_id="q1", text="q", alpha=0.5, budget_s=1e308, max_hops=64)))
            reply = decode(raw)[1]
            assert time.monotonic() - began < 2.0
            assert isinstance(reply, Result) and reply.ok and reply.agent == "b", reply
            assert [(h.agent, h.decision) for h in reply.trace] == [("a", "error"), ("b", "forced")]
            assert s.nodes["c"].backend.calls == 0

    run(scenario, timeout=20)


def test_handle_never_raises_a_fault_of_its_own() -> None:
    """Whatever goes wrong inside a handler, the sender gets an `internal` error reply, never an exception."""
    async def scenario() -> None:
        async with MemorySwarm() as s:
            node = s.node("a", 0.1, ScriptedBackend({"q": "a"}))
            await s.start_all(background=False)

            async def broken(_: StatusRequest):
                raise RuntimeError("a bug of ours")

            node._handlers[StatusRequest] = broken
            reply = decode(await node.handle(encode(StatusRequest(), "s1")))[1]
            assert isinstance(reply, Error) and reply.code == "internal" and "RuntimeError" in reply.message
            answer = await s.client.ask("q")
            assert isinstance(answer, Answer) and answer.text == "a"

    run(scenario, timeout=10)


def test_a_client_query_with_a_lone_surrogate_is_sent_cleaned() -> None:
    async def scenario() -> None:
        async with MemorySwarm() as s:
            s.node("a", 0.1, ScriptedBackend({"q \ufffd": "seen cleaned"}))
            await s.start_all(background=False)
            try:
                answer = await s.client.ask("q \ud800")
            except QueryError as exc:
                pytest.fail(f"the query was not sent: {exc}")
            assert answer.text == "seen cleaned"

    run(scenario, timeout=10)
