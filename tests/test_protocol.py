"""The wire protocol: every message round-trips, and anything malformed gets a coded error, never
an exception to the caller and never an unpickle. AgentNode.handle keeps serving after bad input."""

from __future__ import annotations

import asyncio
import pickle

import msgpack
import pytest

from swarm.errors import Oversize, ProtocolError
from swarm.node import AgentNode
from swarm.protocol import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Cancel,
    Chunk,
    Error,
    Gossip,
    Hop,
    Join,
    Leave,
    Member,
    Ping,
    PingReq,
    Pong,
    Query,
    Result,
    MemberChange,
    PeerCount,
    RecentQuery,
    Status,
    Timing,
    Speculations,
    StatusRequest,
    View,
    decode,
    encode,
    error_reply,
    expect,
)
from swarm.testing import MemorySwarm, ScriptedBackend

# -- helpers ----------------------------------------------------------------------------------

_A = Member(name="a", cost=0.1, state="suspect", incarnation=3, links=["b", "c"])
_B = Member(name="b", cost=0.9, state="left", incarnation=7)

SAMPLES = {
    "query": Query(query_id="q1", text="What is 2+2?", alpha=0.8, budget_s=12.5, max_hops=4, visited=["a", "b"], sender="b", digest="abcd"),
    "result": Result(
        query_id="q1", ok=True, text="4", agent="c", cost=0.9,
        trace=[Hop(agent="a", decision="reject", seconds=0.5, tokens_in=3, tokens_out=2), Hop(agent="c", decision="answer", detail="x")],
    ),
    "join": Join(member=_A),
    "gossip": Gossip(digest="0011", updates=[_A, _B], full=True),
    "view": View(digest="ffee", members=[_A, _B]),
    "leave": Leave(member=_B),
    "ping": Ping(sender="a"),
    "pong": Pong(name="b", incarnation=9),
    "ack": Ack(),
    "status_request": StatusRequest(),
    "status": Status(
        name="a", state="alive", cost=0.1, incarnation=2, in_flight=1, received=5, answered=3, rejected=1,
        forced=1, failed=0, forwarded=1, members=[_A],
        forwards_to=[PeerCount(peer="b", count=1)],
        recent=[RecentQuery(query_id="q1", ok=True, agent="b", seconds=0.2, age_s=1.5,
                            trace=[Hop(agent="a", decision="reject"), Hop(agent="b", decision="answer")])],
        changes=[MemberChange(name="b", state="dead", previous="suspect", incarnation=7, age_s=0.5)],
        timing=Timing(agent="a", decide_s=0.01, decide_slow_s=0.03, answer_s=0.2),
        speculation=Speculations(started=3, used=1, cancelled=2, cancelled_s=0.4),
    ),
    "error": Error(code="oversize", message="too big"),
    "ping_req": PingReq(target="c", sender="a"),
    "cancel": Cancel(query_id="q1", sender="b"),
    "chunk": Chunk(query_id="q1", text="The answer", sender="c"),
}


def _raw(envelope: object) -> bytes:
    return msgpack.packb(envelope, use_bin_type=True)


def _env(type_: object = "ping", body: object = None, v: object = None, id_: object = "m1", **extra: object) -> bytes:
    envelope = {"v": list(PROTOCOL_VERSION) if v is None else v, "type": type_, "id": id_, "body": {"sender": "x"} if body is None else body}
    envelope.update(extra)
    return _raw(envelope)


def _code(data: bytes) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value.code


_EXECUTED: list[str] = []


def _mark_executed() -> None:  # what a malicious pickle would run on load
    _EXECUTED.append("pwned")


class _Evil:
    def __reduce__(self):
        return (_mark_executed, ())


EVIL_PICKLE = pickle.dumps(_Evil(), protocol=pickle.HIGHEST_PROTOCOL)


# -- round trips ------------------------------------------------------------------------------


def test_samples_cover_every_message_type() -> None:
    assert set(SAMPLES) == set(MESSAGE_TYPES)
    for name, body in SAMPLES.items():
        assert isinstance(body, MESSAGE_TYPES[name])


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    body = SAMPLES[name]
    data = encode(body, msg_id=f"id-{name}")
    assert isinstance(data, bytes)
    msg_id, back = decode(data)
    assert msg_id == f"id-{name}"
    assert type(back) is type(body)
    assert back == body
    # The envelope is the documented plain msgpack map.
    envelope = msgpack.unpackb(data, raw=False)
    assert envelope["v"] == list(PROTOCOL_VERSION)
    assert envelope["type"] == name
    assert envelope["id"] == f"id-{name}"
    assert isinstance(envelope["body"], dict)


def test_missing_id_defaults_to_empty() -> None:
    data = _raw({"v": [1, 0], "type": "ping", "body": {"sender": "a"}})
    assert decode(data) == ("", Ping(sender="a"))


def test_unknown_body_keys_are_ignored() -> None:
    data = _env("pong", {"name": "b", "incarnation": 4, "added_in_1_7": {"nested": [1, 2]}, "zzz": b"\x00"})
    _, body = decode(data)
    assert body == Pong(name="b", incarnation=4)
    assert not hasattr(body, "added_in_1_7")


def test_unknown_keys_in_nested_models_are_ignored() -> None:
    member = {"name": "a", "cost": 0.5, "state": "alive", "incarnation": 1, "links": [], "region": "eu"}
    _, body = decode(_env("join", {"member": member}))
    assert body == Join(member=Member(name="a", cost=0.5, incarnation=1))


def test_unknown_envelope_keys_are_ignored() -> None:
    _, body = decode(_env("ping", {"sender": "q"}, traceparent="00-abc", compression=None))
    assert body == Ping(sender="q")


@pytest.mark.parametrize("minor", [0, 1, 99, 2**31])
def test_any_minor_version_of_our_major_is_accepted(minor: int) -> None:
    _, body = decode(_env("ping", {"sender": "a"}, v=[PROTOCOL_VERSION[0], minor]))
    assert body == Ping(sender="a")


@pytest.mark.parametrize("major", [0, 2, 99])
def test_unknown_major_version_is_refused(major: int) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(_env("ping", {"sender": "a"}, v=[major, 0]))
    assert info.value.code == "unsupported_version"
    assert str(major) in str(info.value)


# -- malformed input --------------------------------------------------------------------------


def test_oversize_is_refused_before_parsing() -> None:
    small = encode(Ping(sender="a"))
    with pytest.raises(ProtocolError) as info:
        decode(small, max_bytes=len(small) - 1)
    assert info.value.code == "oversize"
    assert decode(small, max_bytes=len(small))[1] == Ping(sender="a")  # the limit is inclusive
    # Garbage over the default limit is still "oversize", not "malformed": size is checked first.
    assert _code(b"\xc1" * (MAX_MESSAGE_BYTES + 1)) == "oversize"


def test_valid_message_over_default_limit_is_oversize() -> None:
    query = Query(query_id="q", text="x" * MAX_MESSAGE_BYTES, alpha=0.5, budget_s=1, max_hops=1)
    with pytest.raises(Oversize, match="our own query message of .* exceeds the limit"):
        encode(query)  # the sender finds out, before anything is sent
    big = encode(query, max_bytes=2 * MAX_MESSAGE_BYTES)  # a sender with another limit: the receiver refuses it
    assert len(big) > MAX_MESSAGE_BYTES
    assert _code(big) == "oversize"


MALFORMED_CASES = {
    "ext_in_known_field": _env("ping", {"sender": msgpack.ExtType(1, EVIL_PICKLE)}),  # no ext type is ever unpacked
    "empty": b"",
    "never_used_byte": b"\xc1",
    "truncated": encode(SAMPLES["query"])[:-5],
    "trailing_bytes": encode(Ping(sender="a")) + b"\x00",
    "json_text": b'{"v": [1, 0], "type": "ping"}',
    "not_a_map_list": _raw([1, 0, "ping"]),
    "not_a_map_int": _raw(42),
    "not_a_map_str": _raw("ping"),
    "non_string_map_keys": _raw({1: "x", "v": [1, 0]}),
    "missing_v": _raw({"type": "ping", "id": "", "body": {}}),
    "v_is_string": _env(v="1.0"),
    "v_too_short": _env(v=[1]),
    "v_too_long": _env(v=[1, 0, 0]),
    "v_not_ints": _env(v=["1", "0"]),
    "v_float": _env(v=[1.0, 0]),
    "id_not_string": _env(id_=7),
    "missing_body": _raw({"v": [1, 0], "type": "ping", "id": ""}),
    "body_not_map": _env(body=["sender", "a"]),
    "body_nil": _raw({"v": [1, 0], "type": "ping", "id": "", "body": None}),
    "ext_envelope": _raw(msgpack.ExtType(7, EVIL_PICKLE)),
    "raw_pickle": EVIL_PICKLE,
}


@pytest.mark.parametrize("name", sorted(MALFORMED_CASES))
def test_malformed(name: str) -> None:
    assert _code(MALFORMED_CASES[name]) == "malformed"


def test_not_bytes_is_malformed() -> None:
    with pytest.raises(ProtocolError) as info:
        decode("a string")  # type: ignore[arg-type]
    assert info.value.code == "malformed"


UNKNOWN_TYPE_CASES = {
    "missing_type": _raw({"v": [1, 0], "id": "", "body": {}}),
    "unknown_name": _env("frobnicate"),
    "type_not_string": _env(5),
    "type_is_class_name": _env("Ping"),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_TYPE_CASES))
def test_unknown_type(name: str) -> None:
    assert _code(UNKNOWN_TYPE_CASES[name]) == "unknown_type"


INVALID_BODY_CASES = {
    "pong_missing_incarnation": (_env("pong", {"name": "b"}), "incarnation"),
    "pong_incarnation_not_int": (_env("pong", {"name": "b", "incarnation": "lots"}), "incarnation"),
    "query_missing_text": (_env("query", {"query_id": "q", "alpha": 0.5, "budget_s": 1.0, "max_hops": 2}), "text"),
    "query_alpha_above_one": (_env("query", {"query_id": "q", "text": "t", "alpha": 1.5, "budget_s": 1.0, "max_hops": 2}), "alpha"),
    "query_alpha_negative": (_env("query", {"query_id": "q", "text": "t", "alpha": -0.1, "budget_s": 1.0, "max_hops": 2}), "alpha"),
    "query_zero_hops": (_env("query", {"query_id": "q", "text": "t", "alpha": 0.5, "budget_s": 1.0, "max_hops": 0}), "max_hops"),
    "query_visited_not_list": (_env("query", {"query_id": "q", "text": "t", "alpha": 0.5, "budget_s": 1.0, "max_hops": 2, "visited": 3}), "visited"),
    "query_text_is_map": (_env("query", {"query_id": "q", "text": {"a": 1}, "alpha": 0.5, "budget_s": 1.0, "max_hops": 2}), "text"),
    "member_bad_state": (_env("join", {"member": {"name": "a", "cost": 0.1, "state": "zombie"}}), "member.state"),
    "member_missing_cost": (_env("join", {"member": {"name": "a"}}), "member.cost"),
    "hop_bad_decision": (_env("result", {"query_id": "q", "ok": True, "trace": [{"agent": "a", "decision": "maybe"}]}), "trace.0.decision"),
    "error_missing_code": (_env("error", {"message": "m"}), "code"),
    "view_members_not_list": (_env("view", {"digest": "d", "members": "everyone"}), "members"),
    # 1.2: every integer and list on the wire is bounded
    "incarnation_past_the_bound": (_env("gossip", {"digest": "d", "updates": [{"name": "v", "cost": 0.1, "state": "dead", "incarnation": 2**64 - 1}]}), "updates.0.incarnation"),
    "incarnation_negative": (_env("pong", {"name": "b", "incarnation": -1}), "incarnation"),
    "query_too_many_hops": (_env("query", {"query_id": "q", "text": "t", "alpha": 0.5, "budget_s": 1.0, "max_hops": 10**9}), "max_hops"),
    "query_visited_too_long": (_env("query", {"query_id": "q", "text": "t", "alpha": 0.5, "budget_s": 1.0, "max_hops": 2, "visited": ["a"] * 10_000}), "visited"),
    "query_budget_infinite": (_env("query", {"query_id": "q", "text": "t", "alpha": 0.5, "budget_s": float("inf"), "max_hops": 2}), "budget_s"),
    "name_too_long": (_env("join", {"member": {"name": "n" * 10_000, "cost": 0.1}}), "member.name"),
    "cost_not_finite": (_env("join", {"member": {"name": "a", "cost": float("nan")}}), "member.cost"),
    "tokens_negative": (_env("result", {"query_id": "q", "ok": True, "trace": [{"agent": "a", "decision": "answer", "tokens_in": -5}]}), "trace.0.tokens_in"),
    "curve_too_long": (_env("join", {"member": {"name": "a", "cost": 0.1, "curve": [0.1] * 1000}}), "member.curve"),
    "status_count_huge": (_env("status", {"name": "a", "state": "alive", "cost": 0.1, "incarnation": 0, "in_flight": 2**63, "received": 0,
                                          "answered": 0, "rejected": 0, "forced": 0, "failed": 0, "forwarded": 0, "members": []}), "in_flight"),
}


@pytest.mark.parametrize("name", sorted(INVALID_BODY_CASES))
def test_invalid_body_names_the_field(name: str) -> None:
    data, where = INVALID_BODY_CASES[name]
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert info.value.code == "invalid_body"
    assert where in str(info.value)


def test_decode_never_unpickles() -> None:
    _EXECUTED.clear()
    attempts = [
        EVIL_PICKLE,
        _raw(msgpack.ExtType(1, EVIL_PICKLE)),
        _env("ping", {"sender": msgpack.ExtType(1, EVIL_PICKLE)}),
        _env("ping", {"sender": EVIL_PICKLE}),
        _env("ping", {"sender": "a", "payload": EVIL_PICKLE, "ext": msgpack.ExtType(2, EVIL_PICKLE)}),
        _env("ping", {"sender": "a", "payload": EVIL_PICKLE}),
    ]
    outcomes = []
    for data in attempts:
        try:
            outcomes.append(decode(data))
        except ProtocolError as exc:
            outcomes.append(exc.code)
    assert _EXECUTED == []
    assert outcomes[0] == "malformed"
    assert outcomes[1] == "malformed"
    assert outcomes[2] == "malformed"  # msgpack ext types are refused wherever they appear
    assert outcomes[3] == "invalid_body"  # pickle bytes are not text: refused, not loaded
    assert outcomes[4] == "malformed"
    # Unknown keys holding pickle bytes are dropped as data, never interpreted.
    assert outcomes[5] == ("m1", Ping(sender="a"))


def test_error_reply_and_expect() -> None:
    reply = error_reply(ProtocolError("oversize", "too big"), "m7")
    msg_id, body = decode(reply)
    assert msg_id == "m7"
    assert isinstance(body, Error) and body.code == "oversize"
    with pytest.raises(ProtocolError) as info:
        expect(reply, Pong)
    assert info.value.code == "oversize"
    with pytest.raises(ProtocolError) as info:
        expect(encode(Ack()), Pong)
    assert info.value.code == "unexpected_type"
    assert expect(encode(Pong(name="a", incarnation=1)), Pong) == Pong(name="a", incarnation=1)


# -- a node under bad input -------------------------------------------------------------------


def _two_agents() -> MemorySwarm:
    swarm = MemorySwarm()
    swarm.node("a", 0.1, ScriptedBackend({"easy": "A says 1"}))
    swarm.node("b", 0.9, ScriptedBackend({"hard": "B says 2"}))
    return swarm


NODE_BAD_INPUTS = {
    **{f"malformed_{k}": (v, "malformed") for k, v in MALFORMED_CASES.items()},
    **{f"unknown_type_{k}": (v, "unknown_type") for k, v in UNKNOWN_TYPE_CASES.items()},
    **{f"invalid_body_{k}": (v[0], "invalid_body") for k, v in INVALID_BODY_CASES.items()},
    "unsupported_version": (_env("ping", {"sender": "a"}, v=[2, 0]), "unsupported_version"),
    "oversize": (b"\x00" * (MAX_MESSAGE_BYTES + 1), "oversize"),
    # Well-formed messages that an agent does not take as requests.
    "unexpected_result": (encode(SAMPLES["result"]), "unexpected_type"),
    "unexpected_pong": (encode(SAMPLES["pong"]), "unexpected_type"),
    "unexpected_error": (encode(SAMPLES["error"]), "unexpected_type"),
    "unexpected_view": (encode(SAMPLES["view"]), "unexpected_type"),
}


@pytest.mark.parametrize("name", sorted(NODE_BAD_INPUTS))
def test_node_answers_bad_input_with_error_and_keeps_serving(name: str) -> None:
    data, code = NODE_BAD_INPUTS[name]

    async def scenario() -> None:
        swarm = _two_agents()
        await swarm.start_all(background=False)
        node: AgentNode = swarm.nodes["a"]
        before = node.membership.digest()
        reply = await asyncio.wait_for(node.handle(data), 2)
        _, body = decode(reply)
        assert isinstance(body, Error)
        assert body.code == code
        assert body.message
        # Bad input changed nothing and the agent still routes a normal query.
        assert node.membership.digest() == before
        answer = await asyncio.wait_for(swarm.ask("hard"), 2)
        assert (answer.agent, answer.text) == ("b", "B says 2")
        answer = await asyncio.wait_for(swarm.ask("easy"), 2)
        assert (answer.agent, answer.text) == ("a", "A says 1")
        await swarm.stop()

    _EXECUTED.clear()
    asyncio.run(scenario())
    assert _EXECUTED == []


def test_node_echoes_message_id_and_answers_ping() -> None:
    async def scenario() -> None:
        swarm = _two_agents()
        await swarm.start_all(background=False)
        msg_id, body = decode(await swarm.nodes["b"].handle(encode(Ping(sender="a"), msg_id="req-42")))
        assert msg_id == "req-42"
        assert body == Pong(name="b", incarnation=0, timing=Timing(agent="b"))  # 1.5: its measured times (none yet)
        await swarm.stop()

    asyncio.run(scenario())


def test_node_accepts_newer_minor_version_query() -> None:
    async def scenario() -> None:
        swarm = _two_agents()
        await swarm.start_all(background=False)
        q = {"query_id": "q9", "text": "hard", "alpha": 0.5, "budget_s": 2.0, "max_hops": 4, "priority": "high"}
        reply = await swarm.nodes["a"].handle(_env("query", q, v=[PROTOCOL_VERSION[0], PROTOCOL_VERSION[1] + 3], id_="z"))
        msg_id, result = decode(reply)
        assert msg_id == "z"
        assert isinstance(result, Result) and result.ok
        assert (result.query_id, result.agent, result.text) == ("q9", "b", "B says 2")
        await swarm.stop()

    asyncio.run(scenario())


def test_a_1_2_status_without_the_1_3_exports_still_decodes() -> None:
    """1.3 added optional fields only: an agent still on 1.2 is read, with the exports empty."""
    body = SAMPLES["status"].model_dump(exclude={"forwards_to", "recent", "changes"})
    _, status = decode(_env("status", body, v=[1, 2]))
    assert isinstance(status, Status) and (status.forwards_to, status.recent, status.changes) == ([], [], [])
