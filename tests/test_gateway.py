"""The HTTP gateway on a real local Ray swarm: the official openai client, and raw malformed requests."""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import ray

import swarm
from swarm.errors import SwarmError
from swarm.gateway import GatewaySettings, load_api_keys, serve
from swarm.gateway.limits import KeyRing
from swarm.topology import parse_topology

pytestmark = pytest.mark.ray
DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"
KEY, OTHER_KEY = "test-key-" + "a" * 24, "test-key-" + "b" * 24
QUESTION = "What is 17 + 25?"


def topology(name: str, latency_ms: float = 0) -> swarm.Topology:
    agents = "\n".join(
        f"  - {{name: {n}, cost: {c}, backend: {{kind: replay, table: arith-replay.jsonl, model: {m}, latency_ms: {latency_ms}}}"
        + (", policy: {kind: always_answer}}" if n == "large" else "}")
        for n, c, m in (("small", 0.1, "m1"), ("medium", 0.5, "m3"), ("large", 0.9, "m5"))
    )
    return parse_topology(f"name: {name}\ndefaults: {{deadline_s: 30, drain_timeout_s: 5}}\nagents:\n{agents}\n", base_dir=DATA)


@pytest.fixture(scope="module")
def gw(ray_cluster):
    """Two swarms (fast, and slow at 1.5 s a reply) and gateways with different limits; all stopped at the end."""
    swarms = [swarm.launch(topology("gw")), swarm.launch(topology("gwslow", latency_ms=1500))]
    gateways = {}
    try:
        limits = {"port": 0, "api_keys": (KEY, OTHER_KEY), "max_prompt_tokens": 2000, "max_body_bytes": 256 * 1024}
        gateways["main"] = serve("gw", GatewaySettings(**limits))
        gateways["rate"] = serve("gw", GatewaySettings(**{**limits, "rate_per_s": 0.01, "burst": 2}))
        gateways["queue"] = serve("gwslow", GatewaySettings(**{**limits, "max_in_flight": 1, "max_queue": 0}))
        gateways["deadline"] = serve("gwslow", GatewaySettings(**{**limits, "deadline_s": 0.3}))
        yield gateways
    finally:
        for g in gateways.values():
            g.stop()
        for s in swarms:
            s.shutdown()


def client(g, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=g.base_url, api_key=key, max_retries=0, timeout=60)


def post(g, body=None, *, content: bytes | None = None, key: str | None = KEY, timeout: float = 60) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if body is not None:
        content = json.dumps(body).encode()
    return httpx.post(g.url + "/v1/chat/completions", content=content, headers={**headers, "Content-Type": "application/json"}, timeout=timeout)


def ask(model: str, text: str = QUESTION, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"], err
    assert "Traceback" not in r.text and "File \"" not in r.text
    return err


def still_serves(g) -> None:
    with client(g) as c:
        reply = c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content == "The answer is: 42"
    assert all(a.state == "alive" for a in swarm.attach("gw").status())


# ---------------------------------------------------------------- the openai client


def test_openai_client_gets_an_answer_with_its_routing_trace(gw):
    with client(gw["main"]) as c:
        reply = c.chat.completions.create(model="gw:cost_first", messages=[{"role": "user", "content": QUESTION}])
        assert reply.object == "chat.completion" and reply.model == "gw:cost_first"
        assert reply.choices[0].message.content == "The answer is: 42" and reply.choices[0].finish_reason == "stop"
        trace = reply.model_extra["swarm"]
        assert trace["agent"] == "small" and trace["hops"] == 0 and trace["path"] == ["small"] and trace["cost"] == 0.1
        assert [h["decision"] for h in trace["trace"]] == ["answer"]
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
        timed = c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}],
                                          extra_body={"deadline_s": 10, "target_latency_s": 0.5})  # a soft target is never an error
        assert timed.choices[0].message.content == "The answer is: 42"

        # A question the small agent rejects travels on; the trace shows every decision on the way.
        passed_on = next(q for q in _table_queries() if _answered_beyond_small(c, q))
        trace = c.chat.completions.create(model="gw:performance_first", messages=[{"role": "user", "content": passed_on}]).model_extra["swarm"]
        assert trace["hops"] == len(trace["path"]) - 1 >= 1
        assert trace["trace"][0] == {**trace["trace"][0], "agent": "small", "decision": "reject"}
        assert trace["trace"][-1]["agent"] == trace["agent"] == trace["path"][-1]


def _table_queries() -> list[str]:
    from swarm.backends.replay import ReplayTable

    return ReplayTable.load(DATA / "arith-replay.jsonl").queries()[:60]


def _answered_beyond_small(c: openai.OpenAI, q: str) -> bool:
    reply = c.chat.completions.create(model="gw:performance_first", messages=[{"role": "user", "content": q}])
    return reply.model_extra["swarm"]["agent"] != "small"


def test_openai_client_streams_the_answer(gw):
    with client(gw["main"]) as c:
        stream = c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}], stream=True,
                                           stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "The answer is: 42"
    final = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason == "stop"]
    assert len(final) == 1 and final[0].model_extra["swarm"]["agent"] == "small"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_models_and_health(gw):
    with client(gw["main"]) as c:
        assert [m.id for m in c.models.list()] == ["gw", "gw:performance_first", "gw:balance", "gw:cost_first"]
    health = httpx.get(gw["main"].url + "/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert health.status_code == 200 and health.json()["live_agents"] == ["small", "medium", "large"]
    assert httpx.get(gw["main"].url + "/health", timeout=10).json() == {"status": "ok"}  # without a key: the status only


def test_missing_or_wrong_key_is_401(gw):
    with client(gw["main"], key="not-the-key-" + "c" * 20) as c, pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}])
    assert_error(post(gw["main"], ask("gw"), key=None), 401, "invalid_api_key")
    assert_error(httpx.get(gw["main"].url + "/v1/models", headers={"Authorization": "Basic " + KEY}), 401, "invalid_api_key")
    with client(gw["main"], key=OTHER_KEY) as c:  # every configured key works
        assert c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}]).choices


# ---------------------------------------------------------------- bad input


def test_malformed_requests_get_json_errors_and_the_swarm_serves_on(gw):
    g = gw["main"]
    assert_error(post(g, content=b"this is not json"), 400, "invalid_json")
    assert_error(post(g, content=b"\xff\xfe\x00garbage"), 400, "invalid_json")
    assert_error(post(g, {"model": "gw", "messages": "hello"}), 400, "invalid_request")
    assert_error(post(g, {"model": "gw", "messages": [{"role": "wizard", "content": "hi"}]}), 400, "invalid_request")
    assert_error(post(g, {"model": "gw", "messages": [{"role": "user", "content": 42}]}), 400, "invalid_request")
    assert_error(post(g, {"model": "gw", "messages": []}), 400, "invalid_request")
    assert_error(post(g, {"messages": [{"role": "user", "content": "hi"}]}), 400, "invalid_request")
    assert_error(post(g, [1, 2, 3]), 400, "invalid_request")
    assert_error(post(g, ask("gw", n=3)), 400, "invalid_request")
    assert_error(post(g, ask("gw", target_latency_s=-1)), 400, "invalid_request")
    assert_error(post(g, {"model": "gw", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}), 400, "invalid_request")
    assert_error(post(g, ask("no-such-swarm")), 404, "model_not_found")
    assert_error(post(g, ask("gw:no_such_scenario")), 404, "model_not_found")
    with client(g) as c, pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="other", messages=[{"role": "user", "content": QUESTION}])
    assert_error(post(g, content=b"x" * (10 << 20)), 413, "request_too_large")  # 10 MB
    assert_error(post(g, ask("gw", "y" * (10 << 20))), 413, "request_too_large")
    assert_error(post(g, ask("gw", "z " * 20_000)), 413, "context_length_exceeded")  # 40 KB: under the body limit, over the tokens
    assert_error(httpx.get(g.url + "/v1/nothing-here"), 404, "not_found")
    assert httpx.get(g.url + "/v1/chat/completions").status_code == 405
    still_serves(g)
    assert not _gateway_error_lines(g), "a client's mistake was logged at error level"


def test_client_that_disconnects_midway(gw):
    g, slow = gw["main"], gw["queue"]
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    host, port = g.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:  # half a body, then gone
        sock.sendall(head.format(length=1000).encode() + b'{"model": "gw", "mess')
    body = json.dumps(ask("gwslow")).encode()
    host, port = slow.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:  # a whole request, gone before the answer
        sock.sendall(head.format(length=len(body)).encode() + body)
        _wait_for(lambda: _health(slow)["in_flight"] == 1)
    _wait_for(lambda: _health(slow)["in_flight"] == 0)  # its slot comes back
    still_serves(g)
    r = post(slow, ask("gwslow"))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "The answer is: 42"
    assert not _gateway_error_lines(g) and not _gateway_error_lines(slow)


# ---------------------------------------------------------------- limits


def test_rate_limit_per_key_is_429_with_retry_after(gw):
    g = gw["rate"]
    assert [post(g, ask("gw")).status_code for _ in range(2)] == [200, 200]  # the burst
    r = post(g, ask("gw"))
    assert_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["Retry-After"]) >= 1
    with client(g) as c, pytest.raises(openai.RateLimitError):
        c.chat.completions.create(model="gw", messages=[{"role": "user", "content": QUESTION}])
    assert post(g, ask("gw"), key=OTHER_KEY).status_code == 200  # another key has its own bucket


def test_full_queue_is_429_with_retry_after(gw):
    g = gw["queue"]  # one in flight, none waiting; each answer takes 1.5 s
    first: dict = {}
    thread = threading.Thread(target=lambda: first.setdefault("r", post(g, ask("gwslow"))))
    thread.start()
    try:
        _wait_for(lambda: _health(g)["in_flight"] == 1)
        r = post(g, ask("gwslow"))
        assert_error(r, 429, "overloaded")
        assert r.headers["Retry-After"] == "1"
    finally:
        thread.join(60)
    assert first["r"].status_code == 200


def test_deadline_is_504(gw):
    g = gw["deadline"]  # 0.3 s for answers that take 1.5 s
    with client(g) as c, pytest.raises(openai.InternalServerError) as caught:
        c.chat.completions.create(model="gwslow", messages=[{"role": "user", "content": QUESTION}])
    assert caught.value.status_code == 504 and caught.value.body["code"] == "deadline_exceeded"
    assert_error(post(g, ask("gwslow", deadline_s=0.1)), 504, "deadline_exceeded")


def test_swarm_serve_command(gw, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "swarm.cli", "serve", "gw", "--port", "0", "--api-keys-file", str(keys), "--address", address,
           "--body-timeout-s", "5", "--max-in-flight", "16", "--max-queue", "16", "--max-connections", "64", "--max-in-flight-per-key", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SWARM_LOG_LEVEL": "warning"})
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving swarm 'gw' at http://127.0.0.1:"), line + proc.stderr.read() if not line else line
        base_url = line.split(" at ", 1)[1].split(" ", 1)[0]
        with openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60) as c:
            reply = c.chat.completions.create(model="gw:balance", messages=[{"role": "user", "content": QUESTION}])
        assert reply.choices[0].message.content == "The answer is: 42"
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def test_gateway_on_a_busy_port_or_an_unknown_swarm_fails_in_one_line(gw):
    port = int(gw["main"].url.rsplit(":", 1)[1])
    with pytest.raises(SwarmError, match="the gateway did not start: .*in use"):
        serve("gw", GatewaySettings(port=port))
    with pytest.raises(SwarmError, match="no swarm named 'nothing-here'"):
        serve("nothing-here", GatewaySettings(port=0))


# ---------------------------------------------------------------- settings (no Ray needed)


def test_api_keys_from_file_and_environment(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# gateway keys\n{KEY}\n\n  {OTHER_KEY}  \n")
    assert load_api_keys(keys, environ={}) == (KEY, OTHER_KEY)
    assert load_api_keys(None, environ={"SWARM_API_KEYS": f"{KEY}, {OTHER_KEY}"}) == (KEY, OTHER_KEY)
    assert load_api_keys(None, environ={"SWARM_API_KEYS_FILE": str(keys)}) == (KEY, OTHER_KEY)
    assert load_api_keys(None, environ={}) == ()
    with pytest.raises(SwarmError, match="shorter than 16"):
        load_api_keys(None, environ={"SWARM_API_KEYS": "short"})
    with pytest.raises(SwarmError, match="cannot read API keys"):
        load_api_keys(tmp_path / "missing", environ={})
    ring = KeyRing.of(GatewaySettings(api_keys=(KEY, OTHER_KEY)))
    sealed = GatewaySettings(api_keys=(KEY, OTHER_KEY)).sealed()  # what the gateway's actor is given
    assert sealed.api_keys == () and len(sealed.key_digests) == 2 and KEY not in repr(sealed)
    assert KeyRing.of(sealed).identify(f"Bearer {KEY}") == ring.identify(f"Bearer {KEY}")
    assert ring.identify(f"Bearer {KEY}") and ring.identify(f"bearer {OTHER_KEY}") != ring.identify(f"Bearer {KEY}")
    assert ring.identify(None) is None and ring.identify(f"Bearer {KEY}x") is None and ring.identify(KEY) is None
    with pytest.raises(SwarmError, match="without API keys"):
        GatewaySettings(host="0.0.0.0").check()
    GatewaySettings(host="0.0.0.0", api_keys=(KEY,)).check()


# ---------------------------------------------------------------- helpers


def _wait_for(condition, timeout_s: float = 30) -> None:
    """Poll until true; a bound on waiting, not an assertion about speed."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def _health(g) -> dict:
    """/health with its details (they need a key)."""
    return httpx.get(g.url + "/health", headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json()


def _gateway_error_lines(g) -> list[str]:
    """Error-level lines in the gateway actor's own log files."""
    pid = ray.get(g.actor.__ray_call__.remote(lambda self: os.getpid()))
    logs = ray._private.worker._global_node.get_logs_dir_path()
    lines, paths = [], glob.glob(os.path.join(logs, f"worker-*-{pid}.*"))
    assert paths, f"no log files of the gateway (pid {pid}) in {logs}"
    for path in paths:
        with open(path, errors="replace") as fh:
            lines += [line for line in fh if '"level": "error"' in line or "Traceback" in line]
    return lines
