"""The wire protocol: typed message bodies inside a versioned msgpack envelope.

An envelope is a msgpack map ``{"v": [major, minor], "type": str, "id": str, "body": map}``.
A receiver accepts any minor version of its own major, ignores keys it does not know, and
answers anything it cannot use (oversize, not msgpack, wrong shape, unknown major or type)
with an ``error`` message instead of raising. Nothing here ever unpickles.
"""

from __future__ import annotations

from typing import Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm.errors import ProtocolError

PROTOCOL_VERSION = (1, 1)  # 1.1: Member.curve
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

MemberState = Literal["alive", "suspect", "dead", "left"]
Decision = Literal["answer", "reject", "forced", "unreachable", "refused", "error"]


class _Body(BaseModel):
    # Unknown keys are ignored so that a newer minor version can add fields.
    model_config = ConfigDict(extra="ignore")


class Member(_Body):
    """One row of the membership map that every agent holds."""

    name: str
    cost: float
    state: MemberState = "alive"
    incarnation: int = 0
    links: list[str] = Field(default_factory=list)
    # What a query handed to this agent is worth (utility) at each alpha of swarm.assess.curves.GRID; empty: not advertised.
    # A change comes with a fresh incarnation, so gossip and the digest carry it like any other change.
    curve: list[float] = Field(default_factory=list)


class Hop(_Body):
    """What one agent did with a query: its decision and what that cost."""

    agent: str
    decision: Decision
    seconds: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    detail: str = ""


class Query(_Body):
    """A query on its way through the swarm. ``budget_s`` is the time left, not a wall-clock time,
    so that hosts need no synchronised clocks."""

    query_id: str
    text: str
    alpha: float = Field(ge=0.0, le=1.0)
    budget_s: float = Field(allow_inf_nan=False)
    max_hops: int = Field(ge=1)  # the most agents it may visit, its entry included (forwards: at most max_hops - 1)
    visited: list[str] = Field(default_factory=list)
    sender: str = ""
    digest: str = ""  # the sender's membership digest: a mismatch triggers a gossip exchange


class Result(_Body):
    """The reply to a Query: an answer, or an error code, with the trace from this hop onwards."""

    query_id: str
    ok: bool
    text: str = ""
    agent: str = ""
    cost: float = 0.0
    error_code: str = ""
    error: str = ""
    trace: list[Hop] = Field(default_factory=list)


class Join(_Body):
    member: Member


class Gossip(_Body):
    digest: str
    updates: list[Member] = Field(default_factory=list)
    full: bool = False  # ask the receiver for its whole view


class View(_Body):
    digest: str
    members: list[Member]


class Leave(_Body):
    member: Member


class Ping(_Body):
    sender: str = ""


class Pong(_Body):
    name: str
    incarnation: int


class Ack(_Body):
    pass


class StatusRequest(_Body):
    pass


class Status(_Body):
    name: str
    state: MemberState
    cost: float
    incarnation: int
    in_flight: int
    received: int
    answered: int
    rejected: int
    forced: int
    failed: int
    forwarded: int
    p50_s: float = 0.0  # latency of the queries this agent handled, its downstream included
    p95_s: float = 0.0
    members: list[Member]


class Error(_Body):
    code: str
    message: str


MESSAGE_TYPES: dict[str, type[_Body]] = {
    "query": Query,
    "result": Result,
    "join": Join,
    "gossip": Gossip,
    "view": View,
    "leave": Leave,
    "ping": Ping,
    "pong": Pong,
    "ack": Ack,
    "status_request": StatusRequest,
    "status": Status,
    "error": Error,
}
TYPE_OF: dict[type[_Body], str] = {cls: name for name, cls in MESSAGE_TYPES.items()}


def encode(body: _Body, msg_id: str = "") -> bytes:
    envelope = {
        "v": list(PROTOCOL_VERSION),
        "type": TYPE_OF[type(body)],
        "id": msg_id,
        "body": body.model_dump(mode="python"),
    }
    return msgpack.packb(envelope, use_bin_type=True)


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[str, _Body]:
    """Decode one envelope into (id, body). Raises ProtocolError with a code on any problem."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError("malformed", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise ProtocolError("oversize", f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        envelope = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError("malformed", f"not a msgpack message ({type(exc).__name__}: {exc})") from None
    if not isinstance(envelope, dict):
        raise ProtocolError("malformed", f"envelope must be a map, got {type(envelope).__name__}")
    version = envelope.get("v")
    if not (isinstance(version, list) and len(version) == 2 and all(isinstance(x, int) for x in version)):
        raise ProtocolError("malformed", f"envelope field 'v' must be [major, minor], got {version!r}")
    if version[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(
            "unsupported_version", f"protocol major version {version[0]} is not supported (this agent speaks {PROTOCOL_VERSION[0]}.x)"
        )
    kind = envelope.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}")
    msg_id = envelope.get("id", "")
    if not isinstance(msg_id, str):
        raise ProtocolError("malformed", f"envelope field 'id' must be a string, got {type(msg_id).__name__}")
    body = envelope.get("body")
    if not isinstance(body, dict):
        raise ProtocolError("malformed", f"envelope field 'body' must be a map, got {type(body).__name__}")
    try:
        return msg_id, cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ProtocolError("invalid_body", f"{kind} message: {where}: {first['msg']}") from None


def error_reply(exc: ProtocolError, msg_id: str = "") -> bytes:
    return encode(Error(code=exc.code, message=exc.message), msg_id)


def expect(data: bytes, cls: type[Any]) -> Any:
    """Decode a reply and insist on its type; an ``error`` reply becomes a ProtocolError."""
    _, body = decode(data)
    if isinstance(body, Error):
        raise ProtocolError(body.code, body.message)
    if not isinstance(body, cls):
        raise ProtocolError("unexpected_type", f"expected {TYPE_OF[cls]}, got {TYPE_OF[type(body)]}")
    return body
