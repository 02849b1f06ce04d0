"""Hostile HTTP clients against a real gateway on a real local Ray swarm (issue 16).

Each request of the corpus gets its expected status, a JSON error body and no stack trace, within
a few seconds; a normal query is answered right after each; nothing gets a 500 and the gateway
logs no error for any of it. Slow and half-sent bodies get 408 within the body timeout and hold
nothing but their own connection meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
import ray

import swarm
from swarm.entry import EntryClient
from swarm.errors import BackendError, ProtocolError
from swarm.gateway import GatewaySettings, serve
from swarm.gateway.app import build_app
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.transport.base import Transport
from test_gateway import KEY, OTHER_KEY, QUESTION, _gateway_error_lines, _wait_for, assert_error, ask, topology

pytestmark = pytest.mark.ray
NAME = "hostile"
BODY_TIMEOUT_S = 1.0
CAPPED_HEAD_S = 3.0  # the capped gateway closes a connection whose request head is not in after this


@pytest.fixture(scope="module")
def gws(ray_cluster):
    """One fast swarm and four gateways: keyed (1 s body timeout), keyed with two requests a key and a
    long body timeout, keyless (1 s body timeout), keyless with at most 4 connections."""
    s = swarm.launch(topology(NAME))
    gateways = {}
    try:
        keyed = {"port": 0, "api_keys": (KEY, OTHER_KEY), "max_body_bytes": 1 << 20, "body_timeout_s": BODY_TIMEOUT_S}
        gateways["keyed"] = serve(NAME, GatewaySettings(**keyed))
        gateways["perkey"] = serve(NAME, GatewaySettings(**{**keyed, "body_timeout_s": 30, "max_in_flight_per_key": 2}))
        gateways["open"] = serve(NAME, GatewaySettings(port=0, body_timeout_s=BODY_TIMEOUT_S))
        gateways["capped"] = serve(NAME, GatewaySettings(port=0, max_connections=4, body_timeout_s=CAPPED_HEAD_S))
        yield gateways
    finally:
        for g in gateways.values():
            g.stop()
        s.shutdown()


def address(g) -> tuple[str, int]:
    host, port = g.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def post(g, content: bytes, *, key: str | None = KEY, content_type: str | None = "application/json", host: str | None = None,
         timeout: float = 30) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if content_type:
        headers["Content-Type"] = content_type
    if host:
        headers["Host"] = host
    return httpx.post(g.url + "/v1/chat/completions", content=content, headers=headers, timeout=timeout)


def answered(g, key: str | None = KEY) -> None:
    """A normal query gets its right answer."""
    r = post(g, json.dumps(ask(NAME)).encode(), key=key)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "The answer is: 42"


def head(g, length: int, key: str = KEY) -> bytes:
    host, port = address(g)
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def status_of(sock: socket.socket) -> int:
    """The status code of the response on `sock` (read until the status line is in)."""
    data = b""
    while b"\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            raise AssertionError(f"connection closed before a status line: {data!r}")
        data += piece
    return int(data.split(b" ", 2)[1])


def msg(content) -> bytes:
    return json.dumps({"model": NAME, "messages": [{"role": "user", "content": content}]}).encode()


# (what, body, status, code): each sent to the keyed gateway, with a key and Content-Type: application/json
CORPUS = [
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
    ("deep nesting inside content", b'{"model": "hostile", "messages": [{"role": "user", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
     400, "invalid_json"),
    ("nested content parts", msg([[[[[[["hi"]]]]]]]), 400, "invalid_request"),
    ("a 5,000-digit integer", b'{"model": "hostile", "n": ' + b"9" * 5000 + b', "messages": []}', 400, "invalid_json"),
    ("NaN", b'{"model": "hostile", "alpha": NaN, "messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_json"),
    ("an infinite deadline", b'{"model": "hostile", "deadline_s": 1e999, "messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_request"),
    ("a lone surrogate in the content", b'{"model": "hostile", "messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, "invalid_request"),
    ("a lone surrogate in a part", b'{"model": "hostile", "messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff"}]}]}',
     400, "invalid_request"),
    ("a lone surrogate in the model", b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_request"),
    ("a lone surrogate in an extra field", b'{"model": "hostile", "x": "\\ud800", "messages": [{"role": "user", "content": "What is 17 + 25?"}]}',
     200, None),
    ("content null in a user message", msg(None), 400, "invalid_request"),
    ("content null in a system message",
     json.dumps({"model": NAME, "messages": [{"role": "system", "content": None}, {"role": "user", "content": "hi"}]}).encode(), 400, "invalid_request"),
    ("a string at the top level", b'"hello"', 400, "invalid_request"),
    ("null at the top level", b"null", 400, "invalid_request"),
    ("a number at the top level", b"42", 400, "invalid_request"),
    ("an array at the top level", b"[]", 400, "invalid_request"),
    ("a third of a million empty messages", b'{"model": "hostile", "messages": [' + b",".join([b"{}"] * 340_000) + b"]}", 400, "invalid_request"),
    ("a third of a million empty parts", msg([]).replace(b"[]", b"[" + b",".join([b"{}"] * 340_000) + b"]"), 400, "invalid_request"),
    ("invalid UTF-8", b'{"model": "\xff\xfe"}', 400, "invalid_json"),
    ("an empty body", b"", 400, "invalid_json"),
    ("a body over the limit", b" " * (2 << 20), 413, "request_too_large"),
]


@pytest.mark.parametrize("what,body,status,code", CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_body_gets_its_status_and_the_gateway_answers_after(gws, what, body, status, code):
    g = gws["keyed"]
    began = time.monotonic()
    r = post(g, body)
    assert time.monotonic() - began < 5, f"{what}: took {time.monotonic() - began:.1f} s"
    if code is None:
        assert r.status_code == status, r.text
    else:
        assert_error(r, status, code)
    answered(g)


def test_protocol_level_garbage_never_gets_a_500(gws):
    """What uvicorn's HTTP parser refuses itself: a 400 (or a closed connection), never a 500, and no harm."""
    g = gws["keyed"]
    requests = [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
        b"NOT-HTTP\r\n\r\n",
    ]
    for raw in requests:
        with socket.create_connection(address(g), timeout=10) as sock:
            sock.sendall(raw)
            try:
                status = status_of(sock)
            except (AssertionError, ConnectionResetError) as exc:  # closed without a reply: fine too
                assert "closed before a status line" in str(exc) or isinstance(exc, ConnectionResetError), exc
            else:
                assert status < 500, (raw[:40], status)
        answered(g)
    assert not _gateway_error_lines(g)


def test_keys_never_reach_actor_arguments_or_logs(gws):
    g = gws["keyed"]
    settings = ray.get(g.actor.__ray_call__.remote(lambda self: self.settings))
    assert settings.api_keys == () and len(settings.key_digests) == 2
    assert KEY not in repr(settings) and OTHER_KEY not in repr(settings)
    answered(g, OTHER_KEY)
    assert_error(post(g, msg("hi"), key="wrong-key-" + "x" * 30), 401, "invalid_api_key")
    logs = _gateway_log_text(g)
    for secret in (KEY, OTHER_KEY, *settings.key_digests):
        assert secret not in logs and secret[:16] not in logs


# ---------------------------------------------------------------- slow and half-sent bodies


def test_slow_body_gets_408_and_holds_nothing_meanwhile(gws):
    g = gws["keyed"]
    outcome: dict = {}

    def trickle() -> None:  # the headers, then a byte every 0.2 s: the body would take 200 s
        with socket.create_connection(address(g), timeout=10) as sock:
            began = time.monotonic()
            sock.sendall(head(g, 1000))
            sock.settimeout(0.2)
            while time.monotonic() - began < 10:
                try:
                    sock.sendall(b" ")
                    outcome["status"] = status_of(sock)
                    break
                except TimeoutError:
                    continue
            outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        answered(g)  # while the slow client sends
    finally:
        thread.join(30)
    assert outcome["status"] == 408
    assert BODY_TIMEOUT_S <= outcome["seconds"] < BODY_TIMEOUT_S + 3
    answered(g)


def test_half_sent_body_gets_408_within_the_body_timeout(gws):
    g = gws["keyed"]
    with socket.create_connection(address(g), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(head(g, 1000) + b'{"model": ')  # 10 of 1000 bytes, then silence
        answered(g)
        status = status_of(sock)
        elapsed = time.monotonic() - began
        assert status == 408 and BODY_TIMEOUT_S <= elapsed < BODY_TIMEOUT_S + 3
        assert sock.recv(65536) is not None  # the rest of the 408; the server closes the connection
    # An oversize body sent too slowly is cut off at the same time, not drained for ever.
    with socket.create_connection(address(g), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(head(g, 4 << 20) + b"x" * 1000)
        assert status_of(sock) == 408 and time.monotonic() - began < BODY_TIMEOUT_S + 3
    answered(g)
    assert not _gateway_error_lines(g)


# ---------------------------------------------------------------- caps


def test_per_key_cap_is_429_and_other_keys_go_on(gws):
    g = gws["perkey"]  # two requests of a key at once
    held = [socket.create_connection(address(g), timeout=10) for _ in range(2)]
    try:
        for sock in held:  # two requests whose bodies never finish hold both of KEY's slots
            sock.sendall(head(g, 1000) + b"{")
        refused: list[httpx.Response] = []
        _wait_for(lambda: refused.append(post(g, msg(QUESTION))) or refused[-1].status_code == 429, timeout_s=20)
        err = assert_error(refused[-1], 429, "too_many_in_flight")
        assert "2 requests" in err["message"] and refused[-1].headers["Retry-After"] == "1"
        answered(g, OTHER_KEY)
    finally:
        for sock in held:
            sock.close()
    _wait_for(lambda: post(g, msg(QUESTION)).status_code == 200, timeout_s=20)  # the slots come back


def test_connection_cap_is_503_and_idle_connections_cannot_hold_it(gws):
    """Four connections at once: the fifth gets 503 while they are open. But sockets that send
    nothing, or half a request head, are closed by the gateway after its head timeout, so they
    cannot lock clients out: a normal request is answered while the client still holds them."""
    g = gws["capped"]
    idle = [socket.create_connection(address(g), timeout=10) for _ in range(3)]
    idle.append(socket.create_connection(address(g), timeout=10))
    idle[-1].sendall(b"GET /health HTTP/1.1\r\nHo")  # half a request head, then silence
    began = time.monotonic()
    try:
        assert httpx.get(g.url + "/health", timeout=10).status_code == 503  # well within the head timeout
        answered(gws["keyed"])  # another gateway is untouched
        for sock in idle:
            assert sock.recv(1024) == b""  # closed by the gateway, not by us
        assert CAPPED_HEAD_S - 0.5 < time.monotonic() - began < CAPPED_HEAD_S + 5
        answered(g, key=None)  # our sockets are still open on this side
    finally:
        for sock in idle:
            sock.close()


# ---------------------------------------------------------------- keyless: loopback only, JSON only


def test_keyless_gateway_takes_only_json_and_loopback_hosts(gws):
    g = gws["open"]
    port = address(g)[1]
    assert_error(post(g, msg(QUESTION), key=None, content_type="text/plain"), 415, "unsupported_media_type")
    assert_error(post(g, msg(QUESTION), key=None, content_type="application/x-www-form-urlencoded"), 415, "unsupported_media_type")
    assert_error(post(g, msg(QUESTION), key=None, content_type=None), 415, "unsupported_media_type")
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}",
                 f"evil@localhost:{port}", f"localhost:{port}/x", "[::1"):
        assert_error(post(g, msg(QUESTION), key=None, host=host), 421, "misdirected_request")
        assert_error(httpx.get(g.url + "/health", headers={"Host": host}, timeout=10), 421, "misdirected_request")
    with socket.create_connection(address(g), timeout=10) as sock:  # HTTP/1.0 without a Host header
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert status_of(sock) == 421
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}",
                 f"localhost:{port + 1}"):  # a tunnel (ssh -L 9000:localhost:8000) sends its own port
        r = post(g, msg(QUESTION), key=None, host=host, content_type="application/json; charset=utf-8")
        assert r.status_code == 200, (host, r.text)
    health = httpx.get(g.url + "/health", timeout=10).json()  # keyless on loopback: the details too
    assert health["status"] == "ok" and health["live_agents"] == ["small", "medium", "large"]
    answered(g, key=None)
    # With keys, the content type and the Host header are not checked (the key is the guard).
    r = post(gws["keyed"], msg(QUESTION), content_type="text/plain", host="gateway.internal")
    assert r.status_code == 200, r.text


def test_health_details_only_with_a_key(gws):
    g = gws["keyed"]
    assert httpx.get(g.url + "/health", timeout=10).json() == {"status": "ok"}
    wrong = httpx.get(g.url + "/health", headers={"Authorization": "Bearer not-a-key-" + "x" * 20}, timeout=10)
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    full = httpx.get(g.url + "/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()
    assert full["status"] == "ok" and full["live_agents"] == ["small", "medium", "large"] and full["in_flight"] == 0


def test_no_500_and_no_error_logs_after_the_corpus(gws):
    for g in gws.values():
        assert httpx.get(g.url + "/health", timeout=10).status_code == 200
        assert not _gateway_error_lines(g)


# ---------------------------------------------------------------- upstream faults (in memory)


class Broken(Transport):
    """Queries meet `fault` (a ProtocolError, a Ray error); membership traffic goes through."""

    def __init__(self, inner: Transport, fault: Exception) -> None:
        self.inner, self.fault = inner, fault

    async def send(self, peer: str, data: bytes, control: bool = False) -> bytes:
        if not control:
            raise self.fault
        return await self.inner.send(peer, data, control)


@pytest.mark.parametrize("fault", [ProtocolError("malformed", "garbled reply from http://10.0.0.7:9000/internal"),
                                   ray.exceptions.RaySystemError("the raylet at 10.0.0.7 died")], ids=["protocol", "ray"])
def test_upstream_fault_is_502_without_internal_details(fault):
    async def run() -> httpx.Response:
        async with MemorySwarm() as s:
            s.node("a", 0.1, ScriptedBackend({QUESTION: "The answer is: 42"}))
            await s.start_all()
            client = EntryClient("memory", Broken(s.network.transport("(client)"), fault), s.client.limits)
            assert await client.refresh(also=["a"])
            app = build_app(client, GatewaySettings())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
                return await http.post("/v1/chat/completions", json=ask("memory"), timeout=30)

    r = asyncio.run(run())
    err = assert_error(r, 502, "upstream_error")
    assert "10.0.0.7" not in r.text and err["type"] == "server_error"


def test_backend_error_details_stay_out_of_the_client_trace():
    """A backend's error text (an internal URL) is in the agent's trace, but not in what the client gets."""
    async def run() -> httpx.Response:
        async with MemorySwarm() as s:
            broken = ScriptedBackend({QUESTION: "wrong"})
            broken.fail = BackendError("agent 'a': endpoint http://10.0.0.7:9000/v1/chat/completions: HTTP 500")
            s.node("a", 0.1, broken)
            s.node("b", 0.5, ScriptedBackend({QUESTION: "The answer is: 42"}))
            await s.start_all()
            assert "10.0.0.7" in str((await s.ask(QUESTION)).trace)  # the agents' own trace keeps it
            app = build_app(s.client, GatewaySettings())
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
                return await http.post("/v1/chat/completions", json=ask("memory"), timeout=30)

    r = asyncio.run(run())
    assert r.status_code == 200, r.text
    trace = r.json()["swarm"]["trace"]
    assert r.json()["choices"][0]["message"]["content"] == "The answer is: 42" and "error" in [h["decision"] for h in trace]
    assert all(set(h) == {"agent", "decision", "seconds", "tokens_in", "tokens_out"} for h in trace)
    assert "10.0.0.7" not in r.text


def _gateway_log_text(g) -> str:
    import glob
    import os

    pid = ray.get(g.actor.__ray_call__.remote(lambda self: os.getpid()))
    logs = ray._private.worker._global_node.get_logs_dir_path()
    text = ""
    for path in glob.glob(os.path.join(logs, f"worker-*-{pid}.*")):
        with open(path, errors="replace") as fh:
            text += fh.read()
    return text
