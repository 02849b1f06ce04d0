"""Streaming end to end on a real local Ray swarm: the answering agent is an OpenAI-HTTP agent whose
endpoint (the scripted server) stops after its first word until the test, holding that word, lets
it go on. So each client shown here (Swarm.ask_stream, sync and async; the gateway's SSE through the
official openai client and through `curl -N`) got its first piece before generation ended."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import openai
import pytest
from openai_server import OpenAIServer

import swarm
from swarm.client import Answer
from swarm.gateway import GatewaySettings, serve
from swarm.testing import ScriptedBackend
from swarm.topology import parse_topology

pytestmark = pytest.mark.ray
KEY = "test-key-" + "s" * 24
QUESTION, ANSWER = "Count to five.", "one two three four five, and that is all."


@pytest.fixture(scope="module")
def streamed(ray_cluster):
    """A swarm: `small` (its endpoint rejects everything) passes the query to `large`, whose endpoint
    streams ANSWER; a gateway in front. Yields (swarm, gateway, large's endpoint)."""
    small, large = OpenAIServer(ScriptedBackend({})).start(), OpenAIServer(ScriptedBackend({QUESTION: ANSWER})).start()
    backend = "{{kind: openai, base_url: '{}', model: test-model, api_key_env: null, timeout_s: 30}}"
    topo = parse_topology(
        "name: streamed\ndefaults: {deadline_s: 60, drain_timeout_s: 5}\nagents:\n"
        f"  - {{name: small, cost: 0.1, backend: {backend.format(small.base_url)}}}\n"
        f"  - {{name: large, cost: 0.9, backend: {backend.format(large.base_url)}, policy: {{kind: always_answer}}}}\n")
    s = swarm.launch(topo)
    g = None
    try:
        g = serve("streamed", GatewaySettings(port=0, api_keys=(KEY,)))
        yield s, g, large
    finally:
        if g is not None:
            g.stop()
        s.shutdown()
        small.stop()
        large.stop()


def hold(server: OpenAIServer) -> callable:
    """The endpoint's next generation stops after its first word; the returned call lets it go on."""
    pause = asyncio.Event()
    server.backend.pause = pause
    return lambda: server._loop.call_soon_threadsafe(pause.set)


def check(pieces: list[str], answer: Answer) -> None:
    assert "".join(pieces) == answer.text == ANSWER
    assert answer.agent == "large" and [h.decision for h in answer.trace] == ["reject", "forced"]


def test_ask_stream_yields_the_first_piece_before_generation_ends(streamed):
    s, _, large = streamed
    finished = large.backend.finished
    release = hold(large)
    items = s.ask_stream(QUESTION)
    first = next(items)
    assert first == "one" and large.backend.finished == finished  # the endpoint is still generating
    release()
    *rest, answer = list(items)
    check([first, *rest], answer)


def test_ask_stream_async_yields_the_first_piece_before_generation_ends(streamed):
    s, _, large = streamed

    async def scenario():
        finished = large.backend.finished
        release = hold(large)
        items = s.ask_stream_async(QUESTION)
        first = await anext(items)
        assert first == "one" and large.backend.finished == finished
        release()
        return [first, *[item async for item in items]]

    *pieces, answer = asyncio.run(scenario())
    check(pieces, answer)


def test_openai_client_gets_the_first_chunk_before_generation_ends(streamed):
    s, g, large = streamed
    finished = large.backend.finished
    release = hold(large)
    with openai.OpenAI(base_url=g.url + "/v1", api_key=KEY, max_retries=0) as c:
        stream = c.chat.completions.create(model="streamed", messages=[{"role": "user", "content": QUESTION}], stream=True,
                                           stream_options={"include_usage": True})
        chunks = []
        for chunk in stream:
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                break
        assert chunks[-1].choices[0].delta.content == "one" and large.backend.finished == finished
        release()
        chunks += list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    final = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason == "stop"]
    assert text == ANSWER and len(final) == 1
    trace = final[0].model_extra["swarm"]  # the routing trace rides on the final chunk
    assert trace["agent"] == "large" and trace["path"] == ["small", "large"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_curl_gets_the_first_event_before_generation_ends(streamed):
    s, g, large = streamed
    finished = large.backend.finished
    release = hold(large)
    body = json.dumps({"model": "streamed", "stream": True, "messages": [{"role": "user", "content": QUESTION}]})
    curl = subprocess.Popen(["curl", "-sN", g.url + "/v1/chat/completions", "-H", f"Authorization: Bearer {KEY}",
                             "-H", "Content-Type: application/json", "-d", body], stdout=subprocess.PIPE, text=True)
    try:
        events = []
        for line in curl.stdout:
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                if events[-1]["choices"] and events[-1]["choices"][0]["delta"].get("content"):
                    break
        assert events[-1]["choices"][0]["delta"]["content"] == "one" and large.backend.finished == finished
        release()
        rest = curl.stdout.read()
    finally:
        curl.wait(30)
    lines = [line for line in rest.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    last = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in [*events, *last] if e["choices"])
    assert text == ANSWER and last[-1]["swarm"]["agent"] == "large"


def test_a_client_that_goes_away_mid_stream_stops_the_generation(streamed):
    s, g, large = streamed
    large.backend.answers["Count on."] = " ".join(["on"] * 5000)
    large.backend.pause, large.backend.token_delay_s = None, 0.01
    cancelled = large.backend.cancelled
    try:
        with openai.OpenAI(base_url=g.url + "/v1", api_key=KEY, max_retries=0) as c:
            stream = c.chat.completions.create(model="streamed", messages=[{"role": "user", "content": "Count on."}], stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            stream.close()  # gone: the gateway cancels the query, the agent its request, the endpoint its generation
        at_close = large.backend.streamed
        for _ in range(500):
            if large.backend.cancelled > cancelled:
                break
            time.sleep(0.02)
        # On failure, say where the cancel stopped: at the gateway (small never cancelled), between the agents
        # (small did, large did not), or at the endpoint (large did, its endpoint generates on).
        where = {n: st and (st.cancelled, st.in_flight) for n, st in s.statuses().items()}
        assert large.backend.cancelled == cancelled + 1, f"(cancelled, in flight) by agent: {where}"
        assert large.backend.streamed - at_close < 500  # of 5000 words at 10 ms each: it stopped soon after the close
    finally:
        large.backend.token_delay_s = 0.0
