"""The wire protocol: typed message bodies inside a versioned msgpack envelope.

An envelope is a msgpack map ``{"v": [major, minor], "type": str, "id": str, "body": map}``.
A receiver accepts any minor version of its own major, ignores keys it does not know, and
answers anything it cannot use (oversize, not msgpack, wrong shape, unknown major or type)
with an ``error`` message instead of raising. Nothing here ever unpickles.

Decoding does bounded work whatever the bytes: at most MAX_MESSAGE_BYTES, no string, list or map
longer than a message may hold, at most MAX_CONTAINERS lists and maps in all, every field bounded
by its model, and errors that quote at most a few dozen characters of what was sent. Text is
sanitised where it enters a message (a lone surrogate from a backend or a client becomes U+FFFD),
so every message built here can be encoded; one that would exceed MAX_MESSAGE_BYTES is refused
by `encode` with `Oversize`, the sender's own fault, never charged to the peer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgpack
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from swarm.errors import Oversize, ProtocolError
from swarm.quoting import short

PROTOCOL_VERSION = (1, 8)  # 1.1: Member.curve. 1.2: ping_req, cancel, Result.duplicate; every field bounded.
# 1.3: Status.forwards_to, Status.recent, Status.changes (what the dashboard shows; nothing on the query path)
# 1.4: Query.stream_to and the chunk message (streaming: the answering agent sends its text to the entry as it is generated)
# 1.5: Query.target_s (a soft latency target), Timing on Pong and Result (agents' measured decision and answer times)
# 1.6: Status.timing (the agent's own measured times, as it advertises them) and Status.speculation (its counters);
#      Member.accuracy (a query passed on with no time to decide goes to the peer that answers it best)
# 1.7: Timing.quick_s, Timing.quick_slow_s (how long the agent takes to decide on its prefill alone)
# 1.8: Member.regions, Member.region_curves, Query.region, Query.regions (value curves per region of a shared region map)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

# Every integer and list on the wire is bounded, so that no message can make a receiver hold
# (or later fail to encode) something unbounded. An incarnation stays far below 2**63 even
# after a refutation adds one, and a member list holds a whole swarm's view.
MAX_INCARNATION = 2**53
MAX_MEMBERS = 100_000
MAX_HOPS = 64
MAX_TRACE = 4 * MAX_HOPS  # a hop can add its own decision and each peer it found unreachable
MAX_NAME = 256
MAX_DETAIL = 1024
MAX_KEYS = 64  # keys in one map: a body has about 15; room for minor versions to add more
MAX_RECENT = 16  # queries an agent remembers having entered the swarm through it, for Status.recent
MAX_CHANGES = 64  # membership changes an agent remembers having seen, for Status.changes
MAX_CHUNK_CHARS = 64 * 1024  # one piece of a streamed answer; longer text goes as several
MAX_REGIONS = 16  # regions of a region map (swarm.assess.regions) the wire carries curves for
MAX_CONTAINERS = 4 * MAX_MEMBERS  # lists and maps in one message: a full view holds 3 per member


def clean_text(text: str) -> str:
    """`text` as valid Unicode: each lone surrogate (which no UTF-8 encoder accepts) becomes U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


Text = Annotated[str, AfterValidator(clean_text)]
Name = Annotated[str, Field(max_length=MAX_NAME), AfterValidator(clean_text)]
Detail = Annotated[str, Field(max_length=MAX_DETAIL), AfterValidator(clean_text)]
Count = Annotated[int, Field(ge=0, le=2**53)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


MemberState = Literal["alive", "suspect", "dead", "left"]
Decision = Literal["answer", "reject", "forced", "unreachable", "refused", "error"]


class _Body(BaseModel):
    # Unknown keys are ignored so that a newer minor version can add fields.
    model_config = ConfigDict(extra="ignore")


class Member(_Body):
    """One row of the membership map that every agent holds."""

    name: Name
    cost: Finite
    state: MemberState = "alive"
    incarnation: int = Field(default=0, ge=0, le=MAX_INCARNATION)
    links: list[Name] = Field(default_factory=list, max_length=1024, fail_fast=True)
    # What a query handed to this agent is worth (utility) at each alpha of swarm.assess.curves.GRID; empty: not advertised.
    # A change comes with a fresh incarnation, so gossip and the digest carry it like any other change.
    curve: list[Finite] = Field(default_factory=list, max_length=64, fail_fast=True)
    # 1.6: the share of its validation queries it answers right when it answers them all; what a query passed to it
    # with no time to decide is worth is then accuracy - alpha x cost (swarm.latency.blind_pass). None: unknown.
    accuracy: Finite | None = Field(None, ge=0.0, le=1.0)
    # 1.8: the digest of the region map (swarm.assess.regions) this agent holds ("": none), and its value curve in each
    # region of that map, one after another (k x the grid's length; empty: not advertised).
    regions: str = Field(default="", max_length=64)
    region_curves: list[Finite] = Field(default_factory=list, max_length=MAX_REGIONS * 64, fail_fast=True)


class Timing(_Body):
    """1.5: an agent's own measured times over its recent policy calls (swarm.latency): until it rejects
    (the median, and the p95), and until it answers (its decision included; the p95); 0: not measured yet.
    1.7: until it rejects on its prefill alone, nothing generated (the median, and the p95): how fast it
    decides when it has no time to judge a reply (`Ask.quick`); 0: it never has."""

    agent: Name
    decide_s: Finite = Field(0.0, ge=0.0, le=1e6)
    decide_slow_s: Finite = Field(0.0, ge=0.0, le=1e6)
    answer_s: Finite = Field(0.0, ge=0.0, le=1e6)
    quick_s: Finite = Field(0.0, ge=0.0, le=1e6)
    quick_slow_s: Finite = Field(0.0, ge=0.0, le=1e6)


class Speculations(_Body):
    """1.6: an agent's speculative forwarding (swarm.speculation), as counted since it started."""

    started: Count = 0  # queries it passed on while it generated
    used: Count = 0  # ... whose copy gave the result (it rejected)
    cancelled: Count = 0  # ... whose copy it cancelled (it answered): work wasted at the peer
    cancelled_s: Finite = Field(0.0, ge=0.0, le=1e12)  # how long those cancelled copies ran, in all


class Hop(_Body):
    """What one agent did with a query: its decision and what that cost."""

    agent: Name
    decision: Decision
    seconds: Finite = 0.0
    tokens_in: Count = 0
    tokens_out: Count = 0
    detail: Detail = ""


class Query(_Body):
    """A query on its way through the swarm. ``budget_s`` is the time left, not a wall-clock time,
    so that hosts need no synchronised clocks."""

    query_id: Name
    text: Text
    alpha: float = Field(ge=0.0, le=1.0)
    budget_s: Finite
    max_hops: int = Field(ge=1, le=MAX_HOPS)  # the most agents it may visit, its entry included (forwards: at most max_hops - 1)
    visited: list[Name] = Field(default_factory=list, max_length=MAX_TRACE, fail_fast=True)
    sender: Name = ""
    digest: str = Field(default="", max_length=64)  # the sender's membership digest: a mismatch triggers a gossip exchange
    # 1.4: the agent (the entry) that streams this query's answer to its client: the answering agent sends it
    # each piece of text as it is generated (Chunk messages), before the Result; empty: no streaming.
    stream_to: Name = ""
    # 1.5: time left until the client's soft latency target (None: no target). Agents choose next hops to meet
    # it where they can (swarm.latency); unlike budget_s it never fails a query.
    target_s: Finite | None = Field(None, ge=0.0)
    # 1.8: the query's region under the region map whose digest is `regions` (set by the first agent that holds a map;
    # an agent holding another map finds the region again). None: not known.
    region: int | None = Field(None, ge=0, lt=MAX_REGIONS)
    regions: str = Field(default="", max_length=64)


class Result(_Body):
    """The reply to a Query: an answer, or an error code, with the trace from this hop onwards."""

    query_id: Name
    ok: bool
    text: Text = ""
    agent: Name = ""
    cost: Finite = 0.0
    error_code: str = Field(default="", max_length=64)
    error: Detail = ""
    trace: list[Hop] = Field(default_factory=list, max_length=MAX_TRACE, fail_fast=True)
    # 1.2: this agent already held the query id; the reply is its one execution's (joined, or remembered).
    duplicate: bool = False
    # 1.5: the measured times of the agents this result passed through on its way back (swarm.latency)
    timings: list[Timing] = Field(default_factory=list, max_length=MAX_TRACE, fail_fast=True)


class Join(_Body):
    member: Member


class Gossip(_Body):
    digest: str = Field(max_length=64)
    updates: list[Member] = Field(default_factory=list, max_length=MAX_MEMBERS, fail_fast=True)
    full: bool = False  # ask the receiver for its whole view


class View(_Body):
    digest: str = Field(max_length=64)
    members: list[Member] = Field(max_length=MAX_MEMBERS, fail_fast=True)


class Leave(_Body):
    member: Member


class Ping(_Body):
    sender: Name = ""


class Pong(_Body):
    name: Name
    incarnation: int = Field(ge=0, le=MAX_INCARNATION)
    timing: Timing | None = None  # 1.5: the answering agent's own measured times


class PingReq(_Body):
    """1.2: ping `target` for me and tell me whether it answered (SWIM's indirect probe), so that one
    lost path between two agents does not make either look dead to the other."""

    target: Name
    sender: Name = ""


class Cancel(_Body):
    """1.2: the sender no longer waits for `query_id` (its deadline passed, it judged us dead, the
    client went away): stop working on it and cancel it downstream. Answered with an Ack."""

    query_id: Name
    sender: Name = ""


class Chunk(_Body):
    """1.4: the next piece of the answer to `query_id`, from the agent answering it to the agent
    streaming it to the client (`Query.stream_to`). Answered with an Ack once it is queued there."""

    query_id: Name
    text: Text = Field(max_length=MAX_CHUNK_CHARS)
    sender: Name = ""


class Ack(_Body):
    pass


class StatusRequest(_Body):
    pass


class PeerCount(_Body):
    """1.3: queries this agent passed on to `peer` and got a reply from, since it started."""

    peer: Name
    count: Count


class RecentQuery(_Body):
    """1.3: a query that entered the swarm through this agent, as it finished: the whole path and
    every decision (hops without their `detail`, which can hold a backend's error text)."""

    query_id: Name
    ok: bool
    agent: Name = ""  # who answered
    error_code: str = Field(default="", max_length=64)
    seconds: Finite = 0.0
    age_s: Finite = 0.0  # how long ago it finished, by this agent's clock: a duration, so no host needs a synchronised clock
    trace: list[Hop] = Field(default_factory=list, max_length=MAX_TRACE, fail_fast=True)


class MemberChange(_Body):
    """1.3: a change of a member's state that this agent saw in its own map (a join, a suspicion,
    a refutation, a goodbye, a death), `age_s` seconds ago by its own clock."""

    name: Name
    state: MemberState
    previous: MemberState | None = None  # None: a member new to this agent
    incarnation: int = Field(ge=0, le=MAX_INCARNATION)
    age_s: Finite = 0.0


class Status(_Body):
    name: Name
    state: MemberState
    cost: Finite
    incarnation: int = Field(ge=0, le=MAX_INCARNATION)
    in_flight: Count
    received: Count
    answered: Count
    rejected: Count
    forced: Count
    failed: Count
    forwarded: Count
    p50_s: Finite = 0.0  # latency of the queries this agent handled, its downstream included
    p95_s: Finite = 0.0
    members: list[Member] = Field(max_length=MAX_MEMBERS, fail_fast=True)
    # 1.2: executions of one query id beyond its first here (joined or answered from memory instead), and cancels obeyed
    duplicates: Count = 0
    cancelled: Count = 0
    # 1.3: forwards answered, per peer; the last queries that entered here; the last membership changes seen here
    forwards_to: list[PeerCount] = Field(default_factory=list, max_length=1024, fail_fast=True)
    recent: list[RecentQuery] = Field(default_factory=list, max_length=MAX_RECENT, fail_fast=True)
    changes: list[MemberChange] = Field(default_factory=list, max_length=MAX_CHANGES, fail_fast=True)
    # 1.6: its own measured times (what it tells peers on pongs and results), and its speculative forwarding
    timing: Timing | None = None
    speculation: Speculations | None = None


class Error(_Body):
    code: str = Field(max_length=64)
    message: Detail


MESSAGE_TYPES: dict[str, type[_Body]] = {
    "query": Query,
    "result": Result,
    "join": Join,
    "gossip": Gossip,
    "view": View,
    "leave": Leave,
    "ping": Ping,
    "pong": Pong,
    "ping_req": PingReq,
    "cancel": Cancel,
    "chunk": Chunk,
    "ack": Ack,
    "status_request": StatusRequest,
    "status": Status,
    "error": Error,
}
TYPE_OF: dict[type[_Body], str] = {cls: name for name, cls in MESSAGE_TYPES.items()}


def encode(body: _Body, msg_id: str = "", max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The envelope's bytes; `Oversize` when they would exceed what any receiver accepts."""
    envelope = {
        "v": list(PROTOCOL_VERSION),
        "type": TYPE_OF[type(body)],
        "id": msg_id,
        "body": body.model_dump(mode="python"),
    }
    data = msgpack.packb(envelope, use_bin_type=True)
    if len(data) > max_bytes:
        raise Oversize(f"our own {TYPE_OF[type(body)]} message of {len(data)} bytes exceeds the limit of {max_bytes}")
    return data


def _unpack(data: bytes, max_bytes: int) -> Any:
    containers = 0

    def count(container: Any) -> Any:  # called once per list and map built: stop a flood of tiny ones early
        nonlocal containers
        containers += 1
        if containers > MAX_CONTAINERS:
            raise ProtocolError("malformed", f"more than {MAX_CONTAINERS} lists and maps in one message")
        return container

    return msgpack.unpackb(
        data, raw=False, strict_map_key=True, max_str_len=max_bytes, max_bin_len=max_bytes, max_ext_len=0,
        max_array_len=MAX_MEMBERS, max_map_len=MAX_KEYS, list_hook=count, object_hook=count,
    )


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[str, _Body]:
    """Decode one envelope into (id, body). Raises ProtocolError with a code on any problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("malformed", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError("oversize", f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        envelope = _unpack(data, max_bytes)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError("malformed", f"not a msgpack message within the limits ({type(exc).__name__}: {short(str(exc))})") from None
    if not isinstance(envelope, dict):
        raise ProtocolError("malformed", f"envelope must be a map, got {type(envelope).__name__}")
    version = envelope.get("v")
    if not (isinstance(version, list) and len(version) == 2 and all(isinstance(x, int) for x in version)):
        raise ProtocolError("malformed", f"envelope field 'v' must be [major, minor], got {short(version)}")
    if version[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            "unsupported_version", f"protocol major version {version[0]} is not supported (this agent speaks {PROTOCOL_VERSION[0]}.x)"
        )
    kind = envelope.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type {short(kind)}")
    msg_id = envelope.get("id", "")
    if not isinstance(msg_id, str) or len(msg_id) > MAX_NAME:
        raise ProtocolError("malformed", f"envelope field 'id' must be a string of at most {MAX_NAME} characters, got {short(msg_id)}")
    body = envelope.get("body")
    if not isinstance(body, dict):
        raise ProtocolError("malformed", f"envelope field 'body' must be a map, got {type(body).__name__}")
    try:
        return msg_id, cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ProtocolError("invalid_body", f"{kind} message: {short(where)}: {first['msg'][:200]}") from None


def error_reply(exc: ProtocolError, msg_id: str = "") -> bytes:
    return encode(Error(code=exc.code[:64], message=exc.message[:MAX_DETAIL]), msg_id[:MAX_NAME])


def expect(data: bytes, cls: type[Any]) -> Any:
    """Decode a reply and insist on its type; an ``error`` reply becomes a ProtocolError."""
    _, body = decode(data)
    if isinstance(body, Error):
        raise ProtocolError(body.code, body.message)
    if not isinstance(body, cls):
        raise ProtocolError("unexpected_type", f"expected {TYPE_OF[cls]}, got {TYPE_OF[type(body)]}")
    return body
