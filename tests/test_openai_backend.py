"""OpenAIBackend against a real local OpenAI-compatible HTTP server (tests/openai_server.py):
answers, logprobs, the API key, retries and backoff, errors that say what went wrong, and an
HTTP agent routing inside an in-memory swarm while its endpoint goes down."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from openai_server import OpenAIServer, closed_port

from swarm.backends import build_backend
from swarm.backends.base import GenerationRequest
from swarm.backends.openai_http import MAX_RESPONSE_BYTES, RETRY_AFTER_CAP_S, OpenAIBackend, _retry_after
from swarm.client import Answer
from swarm.errors import BackendError, QueryError
from swarm.policies import AlwaysAnswer, Ask, Confidence, SelfAware
from swarm.prompts import REJECT_PHRASE, build_messages
from swarm.specs import OpenAIBackendSpec
from swarm.testing import MemorySwarm, ScriptedBackend

KEY = "sk-test-7f3a9c-very-secret"
KEY_ENV = "SWARM_TEST_OPENAI_KEY"
ANSWERS = {"What is 2 + 2?": "The answer is: 4", "Name a prime.": "The answer is: 7"}
LOGPROBS = {"What is 2 + 2?": (-0.1, -0.2, -0.05, -0.3)}


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(main())


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    server = OpenAIServer(ScriptedBackend(ANSWERS, logprobs=LOGPROBS), model="test-model").start()
    yield server
    server.stop()


def spec(base_url: str, **overrides: Any) -> OpenAIBackendSpec:
    fields = {"kind": "openai", "base_url": base_url, "model": "test-model", "api_key_env": None,
              "timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.05, "max_new_tokens": 64}
    return OpenAIBackendSpec(**{**fields, **overrides})


def ask(query: str, allow_reject: bool = False, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest("q1", query, 0.5, allow_reject, build_messages(query, 0.5, allow_reject), **kwargs)


async def generate(backend: OpenAIBackend, request: GenerationRequest):
    await backend.start()
    try:
        return await backend.generate(request)
    finally:
        await backend.close()


def gaps(server: OpenAIServer) -> list[float]:
    times = [r.at for r in server.chat_requests]
    return [b - a for a, b in zip(times, times[1:])]


# -- answers ----------------------------------------------------------------------------------


def test_answer_carries_the_server_text_and_usage_tokens(server: OpenAIServer) -> None:
    backend = build_backend(spec(server.base_url, temperature=0.3), "big")
    assert isinstance(backend, OpenAIBackend)
    gen = run(lambda: generate(backend, ask("What is 2 + 2?")))
    assert (gen.text, gen.finish_reason, gen.token_logprobs) == ("The answer is: 4", "stop", ())
    # Usage comes from the server (ScriptedBackend counts words), not from the client's guess.
    assert (gen.tokens_in, gen.tokens_out) == (5, 4)  # the fallback would count the system prompt too
    assert gen.seconds > 0
    [seen] = server.chat_requests
    assert seen.body["model"] == "test-model" and seen.body["max_tokens"] == 64 and seen.body["temperature"] == 0.3
    assert seen.body["messages"] == build_messages("What is 2 + 2?", 0.5, False)
    assert "logprobs" not in seen.body
    assert seen.authorization is None  # api_key_env: null sends no header

    run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("Name a prime.", max_tokens=3)))
    assert server.chat_requests[-1].body["max_tokens"] == 3


def test_a_reply_starting_with_the_reject_phrase_is_a_rejection(server: OpenAIServer) -> None:
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("unknown question", allow_reject=True)))
    assert (gen.text, gen.finish_reason) == (REJECT_PHRASE, "reject")

    async def through_policy():
        backend = OpenAIBackend(spec(server.base_url), "big")
        await backend.start()
        try:
            return [await SelfAware().respond(Ask("q", text, 0.5), backend) for text in ("unknown question", "Name a prime.")]
        finally:
            await backend.close()

    rejected, answered = run(through_policy)
    assert rejected.rejected and not answered.rejected
    assert answered.text == "The answer is: 7"


def test_logprobs_are_asked_for_and_parsed(server: OpenAIServer) -> None:
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("What is 2 + 2?", logprobs=True)))
    assert server.chat_requests[-1].body["logprobs"] is True
    assert gen.token_logprobs == LOGPROBS["What is 2 + 2?"]
    # spec.logprobs asks for them on every request.
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url, logprobs=True), "big"), ask("What is 2 + 2?")))
    assert gen.token_logprobs == LOGPROBS["What is 2 + 2?"]

    async def confidence():
        backend = OpenAIBackend(spec(server.base_url), "big")
        await backend.start()
        try:
            return await Confidence().respond(Ask("q", "What is 2 + 2?", 0.5), backend)
        finally:
            await backend.close()

    assert not run(confidence).rejected  # exp(mean logprob) ~ 0.86 clears the balance threshold 0.707


# -- the API key ------------------------------------------------------------------------------


def test_api_key_is_read_from_the_environment_and_sent_as_a_bearer_token(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.api_key = KEY
    monkeypatch.setenv(KEY_ENV, KEY)
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url, api_key_env=KEY_ENV), "big"), ask("Name a prime.")))
    assert gen.text == "The answer is: 7"
    assert [r.authorization for r in server.requests] == [f"Bearer {KEY}"] * 2  # GET /models at start, then the POST


def test_missing_key_variable_fails_at_start_naming_it(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(BackendError, match=f"environment variable {KEY_ENV} .* is not set"):
        run(lambda: OpenAIBackend(spec(server.base_url, api_key_env=KEY_ENV), "big").start())
    assert server.requests == []


def test_rejected_key_says_so_and_never_repeats_the_key(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.api_key = "sk-the-right-one"
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(BackendError, match="rejected the API key") as at_start:
        run(lambda: OpenAIBackend(spec(server.base_url, api_key_env=KEY_ENV), "big").start())
    assert KEY not in str(at_start.value) and KEY_ENV in str(at_start.value)

    # The key is revoked while the agent runs: the server's 401 body echoes the key; our error does not.
    async def revoked():
        backend = OpenAIBackend(spec(server.base_url, api_key_env=KEY_ENV), "big")
        server.api_key = KEY
        await backend.start()
        server.api_key = "sk-rotated"
        try:
            await backend.generate(ask("Name a prime."))
        finally:
            await backend.close()

    with pytest.raises(BackendError, match="rejected the API key") as at_run:
        run(revoked)
    assert KEY not in str(at_run.value) and at_run.value.fatal
    assert len(server.chat_requests) == 1  # a 401 is not retried


# -- retries ----------------------------------------------------------------------------------


def test_retries_after_503s_with_doubling_backoff(server: OpenAIServer) -> None:
    server.fail(503, times=2)
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url, backoff_s=0.05), "big"), ask("Name a prime.")))
    assert gen.text == "The answer is: 7"
    assert len(server.chat_requests) == 3
    first, second = gaps(server)
    assert 0.05 <= first < 0.5 and 0.10 <= second < 0.6  # backoff_s, then twice it (plus up to 10% jitter)


def test_429_retry_after_is_honoured(server: OpenAIServer) -> None:
    server.fail(429, times=1, retry_after="0.3")
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url, backoff_s=0.01), "big"), ask("Name a prime.")))
    assert gen.text == "The answer is: 7"
    [gap] = gaps(server)
    assert 0.3 <= gap < 1.0  # the server's 0.3 s, not the client's 0.01 s


def test_503_retry_after_is_honoured_and_exhaustion_says_how_often_it_tried(server: OpenAIServer) -> None:
    server.fail(503, times=5, retry_after="0.1")
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"failed after 3 attempts: HTTP 503") as exc:
        run(lambda: generate(OpenAIBackend(spec(server.base_url, backoff_s=0.01, max_retries=2), "big"), ask("Name a prime.")))
    assert server.base_url in str(exc.value) and not exc.value.fatal
    assert len(server.chat_requests) == 3
    assert 0.2 <= time.monotonic() - start < 5.0  # honours Retry-After; bounded, not a speed target


@pytest.mark.parametrize(
    ("status", "error", "match", "fatal"),
    [
        (400, {"error": {"message": "unsupported parameter: temperature"}}, r"request refused \(HTTP 400\): unsupported parameter", False),
        (422, None, r"request refused \(HTTP 422\)", False),
        (404, {"error": {"message": "The model `test-model` does not exist."}}, r"model 'test-model' or path not found \(HTTP 404\)", True),
        (403, None, "rejected the API key", True),
    ],
)
def test_other_4xx_are_not_retried(server: OpenAIServer, status: int, error: dict | None, match: str, fatal: bool) -> None:
    server.fail(status, times=3, body=error)
    with pytest.raises(BackendError, match=match) as exc:
        run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("Name a prime.")))
    assert exc.value.fatal is fatal
    assert len(server.chat_requests) == 1


def test_wrong_model_name_is_a_404_naming_base_url_and_model(server: OpenAIServer) -> None:
    with pytest.raises(BackendError, match="model 'no-such-model' or path not found") as exc:
        run(lambda: generate(OpenAIBackend(spec(server.base_url, model="no-such-model"), "big"), ask("Name a prime.")))
    assert server.base_url in str(exc.value)
    assert len(server.chat_requests) == 1


def test_prompt_longer_than_the_context_is_reported_as_too_long(server: OpenAIServer) -> None:
    server.context_chars = 50
    with pytest.raises(BackendError, match=r"prompt too long for model 'test-model' \(HTTP 400\): This model's maximum context length"):
        run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("Name a prime.")))
    assert len(server.chat_requests) == 1


def test_slow_endpoint_times_out_after_every_attempt_in_bounded_time(server: OpenAIServer) -> None:
    server.delay_s = 5.0
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"failed after 3 attempts: no reply within 0.1 s"):
        run(lambda: generate(OpenAIBackend(spec(server.base_url, timeout_s=0.1, backoff_s=0.01, max_retries=2), "big"), ask("Name a prime.")))
    elapsed = time.monotonic() - start
    assert len(server.chat_requests) == 3
    assert 0.3 <= elapsed < 5.0  # 3 x 0.1 s timeouts + 0.01 + 0.02 s backoff: bounded, not a speed target


def test_dropped_connections_are_retried(server: OpenAIServer) -> None:
    server.drop_connections = 2
    gen = run(lambda: generate(OpenAIBackend(spec(server.base_url, backoff_s=0.01), "big"), ask("Name a prime.")))
    assert gen.text == "The answer is: 7"
    assert len(server.chat_requests) == 3

    server.drop_connections = 10
    with pytest.raises(BackendError, match="failed after 2 attempts"):
        run(lambda: generate(OpenAIBackend(spec(server.base_url, backoff_s=0.01, max_retries=1), "big"), ask("Name a prime.")))


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    future = email.utils.formatdate(time.time() + 3600, usegmt=True)
    assert [_retry_after(v) for v in ("0.25", "7", "3600", future, "soon", None)] == [0.25, 7.0, RETRY_AFTER_CAP_S, RETRY_AFTER_CAP_S, None, None]
    assert _retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


# -- garbage and a dead endpoint --------------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "match"),
    [
        ("not_json", r"HTTP 200 with a body that is not JSON: '<html><body>502 Bad Gateway"),
        ("no_choices", r"HTTP 200 with no choices: '\{\"object\": \"chat.completion\", \"choices\": \[\]\}'"),
        ("no_content", r"HTTP 200 with no message content: "),
    ],
)
def test_a_200_with_garbage_names_the_endpoint_and_the_problem(server: OpenAIServer, garbage: str, match: str) -> None:
    server.garbage = garbage
    with pytest.raises(BackendError, match=match) as exc:
        run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("Name a prime.")))
    assert f"endpoint {server.base_url}/chat/completions" in str(exc.value)
    assert len(server.chat_requests) == 1


def test_a_response_over_the_size_cap_fails_the_call_without_being_read() -> None:
    huge = "x" * (MAX_RESPONSE_BYTES + 1024)  # the endpoint answers with a body over the cap
    server = OpenAIServer(ScriptedBackend({**ANSWERS, "Name a prime.": huge}), model="test-model").start()
    try:
        began = time.monotonic()
        with pytest.raises(BackendError, match=rf"endpoint {server.base_url}/chat/completions: answered HTTP 200 with more than "
                                               rf"{MAX_RESPONSE_BYTES:,} bytes") as exc:
            run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("Name a prime.")))
        assert time.monotonic() - began < 5 and not exc.value.fatal
        assert len(server.chat_requests) == 1  # not retried
        gen = run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("What is 2 + 2?")))
        assert gen.text == "The answer is: 4"  # a normal reply is read as before
    finally:
        server.stop()


def test_endpoint_down_at_launch_fails_start_quickly() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    backend = OpenAIBackend(spec(url, timeout_s=1.0), "big")
    start = time.monotonic()
    with pytest.raises(BackendError, match=f"agent 'big': endpoint {url}/chat/completions: unreachable at start"):
        run(backend.start)
    assert time.monotonic() - start < 2.0
    assert backend._client is None  # closed again on failure


def test_generate_before_start_is_a_clear_error(server: OpenAIServer) -> None:
    with pytest.raises(BackendError, match="before start"):
        run(lambda: OpenAIBackend(spec(server.base_url), "big").generate(ask("Name a prime.")))


# -- an HTTP agent in a swarm -----------------------------------------------------------------


def http_swarm(server: OpenAIServer, **overrides: Any) -> MemorySwarm:
    swarm = MemorySwarm(deadline_s=10.0)
    swarm.node("small", 0.1, ScriptedBackend({}))  # rejects everything it is allowed to
    swarm.node("mid", 0.4, ScriptedBackend({}))
    swarm.node("big", 1.0, OpenAIBackend(spec(server.base_url, **overrides), "big"), AlwaysAnswer())
    return swarm


def decisions(answer: Answer) -> list[tuple[str, str]]:
    return [(h.agent, h.decision) for h in answer.trace]


def test_query_climbs_the_cascade_to_the_http_agent(server: OpenAIServer) -> None:
    async def scenario() -> Answer:
        swarm = http_swarm(server)
        await swarm.start_all(background=False)
        try:
            return await swarm.ask("What is 2 + 2?")
        finally:
            await swarm.stop()

    answer = run(scenario)
    assert (answer.agent, answer.text, answer.entry) == ("big", "The answer is: 4", "small")
    assert decisions(answer) == [("small", "reject"), ("mid", "reject"), ("big", "forced")]
    assert answer.trace[-1].tokens_in > 0 and answer.trace[-1].tokens_out == 4
    assert len(server.chat_requests) == 1


def test_endpoint_going_down_mid_run_loses_no_query(server: OpenAIServer) -> None:
    server.delay_s = 5.0  # slower than the server's 0.2 s shutdown grace: in-flight requests are cut off

    async def scenario() -> list[Any]:
        swarm = http_swarm(server, timeout_s=3.0, max_retries=1, backoff_s=0.01)
        await swarm.start_all()
        try:
            in_flight = [asyncio.ensure_future(swarm.ask("What is 2 + 2?")) for _ in range(4)]
            while len(server.chat_requests) < 4:  # every one of them is waiting at the endpoint
                await asyncio.sleep(0.005)
            await asyncio.to_thread(server.stop)
            after = [asyncio.ensure_future(swarm.ask("Name a prime.")) for _ in range(4)]
            return await asyncio.gather(*in_flight, *after, return_exceptions=True)
        finally:
            await swarm.stop()

    results = run(scenario)
    assert len(results) == 8
    assert all(isinstance(r, (Answer, QueryError)) for r in results), results
    for answer in results:  # the endpoint is down: mid is the last agent that can answer, and must
        assert isinstance(answer, Answer)
        assert (answer.agent, answer.text) == ("mid", "I cannot answer this.")
        assert decisions(answer) == [("small", "reject"), ("mid", "reject"), ("big", "error"), ("mid", "forced")]
        assert "failed after 2 attempts" in answer.trace[2].detail
    assert len(server.chat_requests) == 4  # nothing reached the endpoint once it was down


def test_the_openai_backend_conforms(server: OpenAIServer) -> None:
    from swarm.testing import check_backend

    run(lambda: check_backend(OpenAIBackend(spec(server.base_url), "remote")), timeout=60)


# -- streaming (upstream SSE) -----------------------------------------------------------------


def test_streamed_reply_reaches_the_caller_before_the_endpoint_finishes(server: OpenAIServer) -> None:
    """The server's backend stops after its first word until the test, holding that word, lets it go on."""
    pieces: list[str] = []
    first = threading.Event()
    server.backend.pause = asyncio.Event()  # bound to the server's loop when it first waits there

    def on_text(piece: str) -> None:
        pieces.append(piece)
        first.set()

    async def scenario():
        backend = OpenAIBackend(spec(server.base_url), "big")
        await backend.start()
        try:
            generating = asyncio.ensure_future(backend.generate(ask("What is 2 + 2?", on_text=on_text)))
            assert await asyncio.to_thread(first.wait, 5)
            assert pieces == ["The"] and not generating.done() and server.backend.finished == 0
            server._loop.call_soon_threadsafe(server.backend.pause.set)
            return await generating
        finally:
            await backend.close()

    gen = run(scenario)
    assert "".join(pieces) == gen.text == "The answer is: 4"
    assert (gen.tokens_in, gen.tokens_out, gen.finish_reason) == (5, 4, "stop")  # usage from the stream's last chunk
    [seen] = server.chat_requests
    assert seen.body["stream"] is True and seen.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("cancels", [1, 2])
def test_cancelling_a_streamed_generation_stops_the_endpoint(server: OpenAIServer, cancels: int) -> None:
    """`cancels` 2: a second cancel one loop turn after the first, as a query cancelled both by a cancel
    message and by Ray cancelling the call that carried it gets; it must not cut short the first's closing
    of the response (before, the connection stayed open and the endpoint generated on)."""
    server.backend.answers["Count."] = " ".join(["one"] * 5000)
    server.backend.token_delay_s = 0.005
    pieces: list[str] = []

    async def scenario():
        backend = OpenAIBackend(spec(server.base_url, timeout_s=10.0), "big")
        await backend.start()
        try:
            generating = asyncio.ensure_future(backend.generate(ask("Count.", on_text=pieces.append)))
            while not pieces:
                await asyncio.sleep(0.005)
            for _ in range(cancels):
                generating.cancel()
                await asyncio.sleep(0)
            with contextlib.suppress(asyncio.CancelledError):
                await generating
            at_cancel = server.backend.streamed
            for _ in range(200):  # the server sees the closed connection and cancels its generation (the client still open)
                if server.backend.cancelled:
                    break
                await asyncio.sleep(0.01)
            return at_cancel
        finally:
            await backend.close()

    at_cancel = run(scenario)
    assert server.backend.cancelled == 1 and server.backend.finished == 0
    assert server.backend.streamed - at_cancel <= 5  # of 5000 words: it stopped as soon as the connection closed


def test_a_stream_that_breaks_after_text_went_out_is_not_retried(server: OpenAIServer) -> None:
    """A retry would send the start of the answer twice: the failure is the caller's to handle."""
    pieces: list[str] = []
    server.backend.pause = asyncio.Event()  # never set: the endpoint goes down after the first word

    stopper = threading.Thread(target=server.stop)

    def on_text(piece: str) -> None:
        pieces.append(piece)
        stopper.start()

    with pytest.raises(BackendError):
        run(lambda: generate(OpenAIBackend(spec(server.base_url), "big"), ask("What is 2 + 2?", on_text=on_text)))
    stopper.join(10)
    assert pieces == ["The"] and len(server.chat_requests) == 1
