"""Conformance checks for your own `Backend`, `Policy` and `Transport` (exported by `swarm.testing`).

Each is a coroutine that exercises the contract the routing core relies on and raises
`AssertionError` saying which promise was broken. The project's own backends, policies and
transports are held to the same checks by its tests.

    await check_backend(MyBackend(...))                 # started and closed by the check
    await check_policy(MyPolicy())                      # against a scripted backend
    await check_transport(my_transport, peer="m1", absent="nobody")   # `peer`: a running agent
"""

from __future__ import annotations

import asyncio
import math

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.errors import BackendError, PeerUnreachable
from swarm.policies import Ask, Policy, Response
from swarm.prompts import REJECT_PHRASE, build_messages, is_rejection
from swarm.protocol import Error, Gossip, Ping, Pong, View, decode, encode, expect
from swarm.transport.base import Transport

QUESTION = "What is 2 + 3?"


def _request(allow_reject: bool, **kwargs: object) -> GenerationRequest:
    return GenerationRequest("conformance", QUESTION, 0.5, allow_reject, build_messages(QUESTION, 0.5, allow_reject), **kwargs)


def _check_generation(g: object, where: str) -> None:
    assert isinstance(g, Generation), f"{where}: expected a Generation, got {type(g).__name__}"
    assert isinstance(g.text, str), f"{where}: Generation.text must be a string"
    for field in ("tokens_in", "tokens_out"):
        value = getattr(g, field)
        assert isinstance(value, int) and value >= 0, f"{where}: Generation.{field} must be a count >= 0, got {value!r}"
    assert isinstance(g.seconds, float | int) and g.seconds >= 0, f"{where}: Generation.seconds must be >= 0, got {g.seconds!r}"
    assert g.finish_reason in ("stop", "length", "reject"), f"{where}: unknown finish_reason {g.finish_reason!r}"


async def check_backend(backend: Backend, timeout_s: float = 300.0) -> None:
    """start; generate (answer, and with rejection allowed; streamed pieces, if any, add up to a
    prefix of the text); concurrent requests; log-probs when
    asked; `reject_logprob` when `scores_first_token`; close. A BackendError is the only error a
    backend may raise for a request it cannot serve."""
    async with asyncio.timeout(timeout_s):
        await backend.start()
        try:
            answer = await backend.generate(_request(False, max_tokens=16))
            _check_generation(answer, "generate")
            assert answer.finish_reason != "reject", "generate: a request that does not allow rejection was stopped as a rejection"
            rejectable = await backend.generate(_request(True, max_tokens=16))
            _check_generation(rejectable, "generate with rejection allowed")
            if rejectable.finish_reason == "reject":
                assert is_rejection(rejectable.text), "generate: finish_reason 'reject' but the text does not start with the reject phrase"
            pieces: list[str] = []
            streamed = await backend.generate(_request(False, max_tokens=16, on_text=pieces.append))
            _check_generation(streamed, "generate with on_text")
            await asyncio.sleep(0)  # pieces a worker thread handed to the loop
            assert streamed.text.startswith("".join(pieces)), "on_text: the pieces streamed must add up to a prefix of the reply's text"
            many = await asyncio.gather(*(backend.generate(_request(False, max_tokens=8)) for _ in range(4)))
            for g in many:
                _check_generation(g, "concurrent generate")
            scored = await backend.generate(_request(False, max_tokens=8, logprobs=True))
            _check_generation(scored, "generate with logprobs")
            assert all(isinstance(x, float) and x <= 0 for x in scored.token_logprobs), "token_logprobs must be log-probabilities (<= 0)"
            if backend.scores_first_token:
                logp, tokens_in = await backend.reject_logprob(_request(True))
                assert isinstance(logp, float) and math.isfinite(logp) and logp <= 0, f"reject_logprob: {logp!r} is not a log-probability"
                assert isinstance(tokens_in, int) and tokens_in > 0, f"reject_logprob: the prompt's token count {tokens_in!r} must be > 0"
            else:
                try:
                    await backend.reject_logprob(_request(True))
                except BackendError:
                    pass
                else:
                    raise AssertionError("reject_logprob: a backend without scores_first_token must raise BackendError")
        finally:
            await backend.close()


class _Scripted(Backend):
    """Rejects when asked to (rejection allowed and `reject`), answers otherwise; reports log-probs."""

    scores_first_token = True

    def __init__(self, reject: bool, confident: bool) -> None:
        self.reject, self.confident, self.requests = reject, confident, []

    async def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        text = request.reject_phrase if (self.reject and request.allow_reject) else "The answer is: 5"
        if request.messages and request.messages[0]["content"].startswith("Decide whether"):
            text = "no" if self.reject else "yes"
        lp = math.log(0.99 if self.confident else 0.01)
        return Generation(text, 10, 5, 0.001, (lp,) * 5 if request.logprobs else ())

    async def reject_logprob(self, request: GenerationRequest) -> tuple[float, int]:
        self.requests.append(request)
        return (math.log(0.99) if self.reject else math.log(0.01)), 10


async def check_policy(policy: Policy) -> None:
    """`respond` returns a Response; with `must_answer` it never rejects and never allows the
    backend to; an answer's text is the backend's; the requests it sends carry the query."""
    for reject in (False, True):
        for confident in (True, False):
            backend = _Scripted(reject, confident)
            policy.check(backend)
            for must_answer in (False, True):
                r = await policy.respond(Ask("conformance", QUESTION, 0.5, must_answer), backend)
                where = f"respond(must_answer={must_answer}) with a backend that {'rejects' if reject else 'answers'}"
                assert isinstance(r, Response), f"{where}: expected a Response, got {type(r).__name__}"
                assert isinstance(r.rejected, bool), f"{where}: Response.rejected must be a bool"
                assert r.tokens_in >= 0 and r.tokens_out >= 0 and r.seconds >= 0, f"{where}: counts and seconds must be >= 0"
                assert backend.requests, f"{where}: the policy never asked its backend"
                assert all(q.query == QUESTION for q in backend.requests), f"{where}: a request to the backend lost the query's text"
                if must_answer:
                    assert not r.rejected, f"{where}: rejected although it must answer"
                    assert not backend.requests[-1].allow_reject, f"{where}: let the backend reject although it must answer"
                    assert r.text and r.text != REJECT_PHRASE, f"{where}: answered with {r.text!r}"
                backend.requests.clear()


async def check_transport(transport: Transport, peer: str, absent: str, timeout_s: float = 30.0) -> None:
    """Bytes to a running agent `peer` come back as its reply, on both lanes; a malformed message
    gets an Error reply, not an exception; an agent that does not exist is `PeerUnreachable`;
    concurrent sends each get their own reply."""
    async with asyncio.timeout(timeout_s):
        pong = expect(await transport.send(peer, encode(Ping(sender="conformance"))), Pong)
        assert pong.name == peer, f"a Ping to {peer!r} was answered by {pong.name!r}"
        view = expect(await transport.send(peer, encode(Gossip(digest="", full=True)), control=True), View)
        assert peer in {m.name for m in view.members}, f"{peer!r}'s view does not hold {peer!r}"
        _, reply = decode(await transport.send(peer, b"\x00not msgpack"))
        assert isinstance(reply, Error), f"a malformed message got {type(reply).__name__}, expected an Error reply"
        replies = await asyncio.gather(*(transport.send(peer, encode(Ping(sender=f"c{i}")), control=i % 2 == 1) for i in range(8)))
        assert all(expect(r, Pong).name == peer for r in replies), "concurrent sends got wrong replies"
        try:
            await transport.send(absent, encode(Ping(sender="conformance")))
        except PeerUnreachable as exc:
            assert exc.peer == absent, f"PeerUnreachable names {exc.peer!r}, not {absent!r}"
        else:
            raise AssertionError(f"a send to {absent!r}, which does not exist, did not raise PeerUnreachable")
