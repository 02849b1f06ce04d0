"""Streaming on the in-memory swarm: the answer's pieces reach the client while it is generated, from
whichever agent answers; the trace comes last; a client that goes away stops the generation."""

from __future__ import annotations

import asyncio

import pytest

from swarm.client import Answer
from swarm.errors import NoCapableAgent
from swarm.policies import AlwaysAnswer, Confidence, SelfAware, Verbalized
from swarm.protocol import Chunk, Result, decode
from swarm.testing import MemorySwarm, ScriptedBackend

QUESTION, ANSWER = "What is 17 + 25?", "The answer is: 42, as 17 plus 25 makes 42."


def run(scenario, timeout: float = 10.0):
    async def main():
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(main())


async def three(s: MemorySwarm, large: ScriptedBackend) -> None:
    s.node("small", 0.1, ScriptedBackend())
    s.node("medium", 0.5, ScriptedBackend())
    s.node("large", 0.9, large, AlwaysAnswer())
    await s.start_all(background=False)


def test_first_piece_arrives_before_generation_ends_from_an_agent_two_hops_away():
    async def scenario():
        large = ScriptedBackend({QUESTION: ANSWER})
        large.pause = asyncio.Event()  # generation cannot end before the test sets this
        async with MemorySwarm() as s:
            await three(s, large)
            items = s.ask_stream(QUESTION)
            first = await anext(items)
            assert first == "The" and large.finished == 0  # in the client's hands while the backend still generates
            large.pause.set()
            rest = [item async for item in items]
        *pieces, answer = [first, *rest]
        assert isinstance(answer, Answer) and all(isinstance(p, str) for p in pieces)
        assert "".join(pieces) == answer.text == ANSWER
        assert answer.agent == "large" and [h.decision for h in answer.trace] == ["reject", "reject", "forced"]
        # the rejecting agents relayed nothing: the pieces went from large straight to the entry
        assert len(pieces) >= 2

    run(scenario)


def test_client_going_away_stops_the_generation_at_once():
    async def scenario():
        large = ScriptedBackend({QUESTION: " ".join(["word"] * 10_000)})
        large.token_delay_s = 0.002
        async with MemorySwarm() as s:
            await three(s, large)
            items = s.ask_stream(QUESTION)
            assert await anext(items) == "word"
            await items.aclose()  # the client went away
            at_cancel = large.streamed
            for _ in range(100):
                if large.cancelled:
                    break
                await asyncio.sleep(0.005)
            assert large.cancelled == 1 and large.finished == 0
            after = large.streamed - at_cancel
            await asyncio.sleep(0.05)  # a generation that ran on would stream ~25 more words here
            assert large.streamed - at_cancel == after <= 2
            assert s.nodes["small"].counters.in_flight == 0 and not s.nodes["small"]._streams

    run(scenario)


@pytest.mark.parametrize("policy", ["self_aware", "verbalized", "confidence"])
def test_a_rejected_reply_never_reaches_the_client(policy):
    """The small agent's reply is rejected (reject phrase, a 'no' self-check, low confidence): the
    client sees only the answering agent's text."""
    async def scenario():
        small = ScriptedBackend({QUESTION: "I am not sure at all.", "self-check": "no"}, logprobs={QUESTION: (-9.0,)})
        policies = {"self_aware": SelfAware(), "verbalized": Verbalized(), "confidence": Confidence()}
        async with MemorySwarm() as s:
            if policy == "self_aware":
                small.answers.pop(QUESTION)  # it says the reject phrase
            s.node("small", 0.1, small, policies[policy])
            s.node("large", 0.9, ScriptedBackend({QUESTION: ANSWER}), AlwaysAnswer())
            await s.start_all(background=False)
            items = [item async for item in s.ask_stream(QUESTION)]
        assert "".join(items[:-1]) == ANSWER and items[-1].agent == "large"

    run(scenario)


def test_the_entry_streams_its_own_answer_and_a_backend_that_cannot_stream_sends_it_whole():
    class Whole(ScriptedBackend):
        async def generate(self, request):
            return await super().generate(type(request)(**{**request.__dict__, "on_text": None}))

    async def scenario():
        async with MemorySwarm() as s:
            s.node("only", 0.1, Whole({QUESTION: ANSWER}), AlwaysAnswer())
            await s.start_all(background=False)
            items = [item async for item in s.ask_stream(QUESTION)]
        assert items[:-1] == [ANSWER] and items[-1].text == ANSWER

    run(scenario)


def test_text_an_agent_did_not_stream_still_reaches_the_client_before_the_answer():
    """An answering agent of protocol 1.3 (it ignores stream_to), or one whose pieces could not be
    delivered: the client gets the whole text as one piece, then the Answer."""
    async def scenario():
        async with MemorySwarm() as s:
            await three(s, ScriptedBackend({QUESTION: ANSWER}))
            s.nodes["large"]._relay = lambda q: None
            return [item async for item in s.ask_stream(QUESTION)]

    *pieces, answer = run(scenario)
    assert pieces == [ANSWER] and answer.text == ANSWER and answer.agent == "large"


def test_errors_end_the_stream_as_ask_raises_them():
    async def scenario():
        async with MemorySwarm() as s:
            broken = ScriptedBackend()
            broken.fail = True
            s.node("small", 0.1, broken)
            await s.start_all(background=False)
            with pytest.raises(NoCapableAgent):
                async for _ in s.ask_stream(QUESTION, deadline_s=2):
                    pass

    run(scenario)


def test_a_chunk_for_a_query_not_streamed_here_is_dropped():
    async def scenario():
        async with MemorySwarm() as s:
            s.node("a", 0.1, ScriptedBackend(), AlwaysAnswer())
            await s.start_all(background=False)
            from swarm.protocol import Ack, encode, expect
            reply = await s.network.deliver("a", encode(Chunk(query_id="nobody", text="spoof", sender="x")))
            assert isinstance(expect(reply, Ack), Ack)

    run(scenario)


def test_a_node_streams_chunks_then_the_result():
    async def scenario():
        async with MemorySwarm() as s:
            s.node("a", 0.1, ScriptedBackend({QUESTION: ANSWER}), AlwaysAnswer())
            await s.start_all(background=False)
            from swarm.client import new_query
            from swarm.protocol import encode
            replies = [decode(r)[1] async for r in s.network.deliver_stream("a", encode(new_query(QUESTION, 0.5, 5, 4, 1000)))]
        assert all(isinstance(r, Chunk) for r in replies[:-1]) and isinstance(replies[-1], Result)
        assert "".join(r.text for r in replies[:-1]) == replies[-1].text == ANSWER

    run(scenario)


def test_the_gateway_cancels_the_query_when_its_client_goes_away_during_a_send():
    """The client goes away while the gateway is sending it a piece (a slow socket): Starlette cancels the
    send, not the body generator, which it leaves suspended. The gateway still closes it as the response
    ends, so the query is cancelled at once, not whenever the garbage collector gets to it (with the
    collector off here: never)."""
    import gc
    import json

    from swarm.gateway import GatewaySettings
    from swarm.gateway.app import build_app

    async def scenario():
        large = ScriptedBackend({QUESTION: " ".join(["word"] * 10_000)})
        large.token_delay_s = 0.002
        async with MemorySwarm() as s:
            await three(s, large)
            app = build_app(s.client, GatewaySettings())
            body = json.dumps({"model": "memory", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}).encode()
            scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
                     "root_path": "", "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
                     "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
            sent: list[bytes] = []
            stuck, gone = asyncio.Event(), asyncio.Event()

            async def receive():
                if not sent:
                    sent.append(b"")
                    return {"type": "http.request", "body": body, "more_body": False}
                await stuck.wait()
                gone.set()
                return {"type": "http.disconnect"}

            async def send(message):
                if message["type"] == "http.response.body" and b'"word"' in message.get("body", b""):
                    stuck.set()
                    await asyncio.Event().wait()  # the socket takes no more: this send waits until it is cancelled
                sent.append(message.get("body", b""))

            await asyncio.wait_for(app(scope, receive, send), 10)
            assert gone.is_set()
            for _ in range(200):
                if large.cancelled:
                    break
                await asyncio.sleep(0.005)
            assert large.cancelled == 1 and large.finished == 0
            assert s.nodes["small"].counters.in_flight == 0 and not s.nodes["small"]._streams

    gc.disable()
    try:
        run(scenario)
    finally:
        gc.enable()
