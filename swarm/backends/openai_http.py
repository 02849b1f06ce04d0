"""OpenAI-compatible HTTP backend: any `POST {base_url}/chat/completions` (a `vllm serve`
process, a hosted API), for remote or closed models.

Decisions worth knowing:
- `start` opens the client and makes one cheap `GET {base_url}/models` with a short timeout, so
  an endpoint that is down, or a key it rejects, fails the agent at launch with a clear message
  instead of failing its first query. Any other answer there (404 from an endpoint without
  /models, a model list without our model, a 5xx) is only logged: generation reports its own errors.
- Rejections are not stopped server-side. A `stop` sequence would also cut an answer that merely
  contains the reject phrase, and the API has no "stop only at the start" option, so the reply is
  generated in full; one that starts with the reject phrase comes back as the phrase alone with
  `finish_reason="reject"` (the usage tokens still count what the endpoint really generated).
- Connect errors, timeouts, dropped connections, 429 and 5xx are retried with exponential backoff
  (`backoff_s`, doubling, up to 10% jitter; a Retry-After header wins, capped). Other 4xx are not
  retried. 401/403 and 404 are configuration errors that will not heal, so they are `fatal`: the
  agent leaves the swarm rather than fail every query.
- The API key is read from the environment at start, sent only in the Authorization header, and
  scrubbed from every error message (some endpoints echo it back in their error bodies).
- A response is read to at most MAX_RESPONSE_BYTES (after decompression); a larger one fails the
  call with a BackendError, not retried, so a broken or hostile endpoint cannot fill the agent's memory.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import re
import time

import httpx
import structlog

from swarm.backends.base import Backend, Generation, GenerationRequest, cancel_once
from swarm.errors import BackendError
from swarm.prompts import is_rejection

log = structlog.get_logger("swarm.backends.openai")

START_CHECK_TIMEOUT_S = 5.0  # the reachability check at start: one try, at most this long
RETRY_AFTER_CAP_S = 30.0  # longest Retry-After honoured; the query's deadline bounds the rest
MAX_RESPONSE_BYTES = 8 << 20  # the most of one response that is read
_SNIPPET = 200
_CONTEXT_TOO_LONG = re.compile(r"context[ _-]?length|maximum context|too long|too many tokens", re.IGNORECASE)


class _Retryable(Exception):
    """One failed attempt that may succeed if tried again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        self.reason, self.retry_after = reason, retry_after
        super().__init__(reason)


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible endpoint, described by an `OpenAIBackendSpec`."""

    def __init__(self, spec, agent_name: str, *, check_endpoint: bool = True) -> None:
        self.spec, self.agent_name, self.check_endpoint = spec, agent_name, check_endpoint
        self.base_url = spec.base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self._client: httpx.AsyncClient | None = None
        self._key = ""

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.close()  # a second start replaces the client instead of leaking it
        headers = {"Accept": "application/json"}
        env = self.spec.api_key_env
        if env:
            self._key = os.environ.get(env, "")
            if not self._key:
                raise BackendError(f"agent {self.agent_name!r}: environment variable {env} (the API key for {self.base_url}) "
                                   "is not set; set it, or set api_key_env: null for an endpoint without a key")
            headers["Authorization"] = f"Bearer {self._key}"
        self._client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.spec.timeout_s))
        if self.check_endpoint:
            try:
                await self._check()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _check(self) -> None:
        url = f"{self.base_url}/models"
        timeout = min(self.spec.timeout_s, START_CHECK_TIMEOUT_S)
        try:
            async with asyncio.timeout(timeout):
                response = await self._client.get(url, timeout=timeout)
        except (httpx.HTTPError, TimeoutError) as exc:
            raise BackendError(self._where(f"unreachable at start (GET {url}: {_describe(exc)})")) from None
        if response.status_code in (401, 403):
            raise BackendError(self._key_rejected(response.status_code), fatal=True)
        if response.status_code != 200:
            log.warning("endpoint model list unavailable", agent=self.agent_name, url=url, status=response.status_code)
            return
        try:
            served = [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            return
        if served and self.spec.model not in served:
            log.warning("model not listed by endpoint", agent=self.agent_name, url=url, model=self.spec.model,
                        served=served[:10])

    # -- generation ----------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> Generation:
        if self._client is None:
            raise BackendError(f"agent {self.agent_name!r}: OpenAIBackend used before start()")
        messages = request.messages or [{"role": "user", "content": request.query}]
        body: dict = {
            "model": self.spec.model,
            "messages": messages,
            "max_tokens": request.max_tokens or self.spec.max_new_tokens,
            "temperature": self.spec.temperature,
        }
        if request.logprobs or self.spec.logprobs:
            body["logprobs"] = True
        if request.on_text is not None:  # upstream SSE; an endpoint that answers in one piece anyway is read as usual
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        start = time.perf_counter()
        payload = await cancel_once(self._post(body, request.on_text))  # a cancel closes the response, and the endpoint stops
        text, finish, logprobs, usage = self._parse(payload)
        if request.allow_reject and request.stop_at_reject and is_rejection(text, request.reject_phrase):
            text, finish = request.reject_phrase, "reject"
        tokens_in = _count(usage, "prompt_tokens", sum(len(str(m.get("content", "")).split()) for m in messages))
        tokens_out = _count(usage, "completion_tokens", len(text.split()))
        return Generation(text, tokens_in, tokens_out, time.perf_counter() - start, logprobs, finish)

    async def _post(self, body: dict, on_text=None) -> dict:
        attempts = self.spec.max_retries + 1
        streamed: list[str] = []  # what went to on_text: once a piece has, a retry would send the answer twice

        def relay(piece: str) -> None:
            streamed.append(piece)
            on_text(piece)

        for attempt in range(attempts):
            try:
                return await self._attempt(body, relay if on_text is not None else None)
            except _Retryable as exc:
                if attempt + 1 == attempts or streamed:
                    raise BackendError(self._where(f"failed after {attempts} attempt{'s' * (attempts > 1)}: {exc.reason}")) from None
                delay = exc.retry_after if exc.retry_after is not None else self.spec.backoff_s * 2**attempt * (1 + 0.1 * random.random())
                log.warning("endpoint retry", agent=self.agent_name, url=self.url, attempt=attempt + 1, reason=exc.reason, delay_s=round(delay, 3))
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict, on_text=None) -> dict:
        """One POST. Returns the decoded JSON of a 200 (an SSE reply, read as it comes and passed to
        `on_text`, as the JSON a whole reply would be), raises _Retryable or BackendError."""
        try:
            # httpx's timeout is per read; this bounds the whole attempt (a server trickling bytes).
            async with asyncio.timeout(self.spec.timeout_s), self._client.stream("POST", self.url, json=body) as streamed:
                if on_text is not None and streamed.status_code == 200 and "text/event-stream" in streamed.headers.get("content-type", ""):
                    return await self._read_events(streamed, on_text)
                response = await self._read_capped(streamed)
        except TimeoutError:
            raise _Retryable(f"no reply within {self.spec.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise _Retryable(f"no reply within {self.spec.timeout_s:g} s") from None
        except httpx.TransportError as exc:  # connect errors, dropped connections
            raise _Retryable(_describe(exc)) from None
        except httpx.HTTPError as exc:  # a reply httpx cannot decode: trying again will not help
            raise BackendError(self._where(_describe(exc))) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}{self._detail(response)}", _retry_after(response.headers.get("retry-after")))
        if status in (401, 403):
            raise BackendError(self._key_rejected(status), fatal=True)
        if status == 404:
            raise BackendError(self._where(f"model {self.spec.model!r} or path not found (HTTP 404){self._detail(response)}; "
                                           f"check base_url {self.base_url!r} and model"), fatal=True)
        if status == 400 and _CONTEXT_TOO_LONG.search(response.text):
            raise BackendError(self._where(f"prompt too long for model {self.spec.model!r} (HTTP 400){self._detail(response)}"))
        if status != 200:
            raise BackendError(self._where(f"request refused (HTTP {status}){self._detail(response)}"))
        try:
            return response.json()
        except ValueError:
            raise BackendError(self._where(f"answered HTTP 200 with a body that is not JSON: {self._snippet(response.text)!r}")) from None

    async def _read_capped(self, response: httpx.Response) -> httpx.Response:
        """The response with its body read, or BackendError past MAX_RESPONSE_BYTES."""
        declared = response.headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES
        body = bytearray()
        if not too_large:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    too_large = True
                    break
        if too_large:
            raise BackendError(self._where(f"answered HTTP {response.status_code} with more than {MAX_RESPONSE_BYTES:,} bytes; "
                                           "the response was not read"))
        # The body as read (decoded): a plain Response around it, without the encoding headers that no longer apply.
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request)

    async def _read_events(self, response: httpx.Response, on_text) -> dict:
        """A streamed reply (server-sent events), each piece of content passed to `on_text` as it
        arrives, returned in the shape of a whole reply. At most MAX_RESPONSE_BYTES are read."""
        text: list[str] = []
        finish, usage, logprobs, read, buffer = None, None, [], 0, b""
        async for data in response.aiter_bytes():
            read += len(data)
            if read > MAX_RESPONSE_BYTES:
                raise BackendError(self._where(f"streamed more than {MAX_RESPONSE_BYTES:,} bytes; the rest was not read"))
            *lines, buffer = (buffer + data).split(b"\n")
            for line in lines:
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue  # comments, event names, blank lines between events
                data_line = line[5:].strip()
                if data_line == b"[DONE]":
                    return self._streamed(text, finish, logprobs, usage)
                try:
                    event = json.loads(data_line)
                except ValueError:
                    raise BackendError(self._where(f"streamed an event that is not JSON: {self._snippet(data_line.decode('utf-8', 'replace'))!r}")) from None
                if not isinstance(event, dict):
                    raise BackendError(self._where(f"streamed an event that is not a JSON object: {self._snippet(json.dumps(event))!r}"))
                if event.get("error") is not None:
                    raise BackendError(self._where(f"stream ended with an error: {self._snippet(json.dumps(event['error']))!r}"))
                usage = event["usage"] if isinstance(event.get("usage"), dict) else usage
                choices = event.get("choices") if isinstance(event.get("choices"), list) else []
                for choice in choices[:1]:
                    delta = choice.get("delta") if isinstance(choice, dict) else None
                    piece = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(piece, str) and piece:
                        text.append(piece)
                        on_text(piece)
                    finish = choice.get("finish_reason") or finish
                    content = choice["logprobs"].get("content") if isinstance(choice.get("logprobs"), dict) else None
                    logprobs += content if isinstance(content, list) else []
        return self._streamed(text, finish, logprobs, usage)  # ended without [DONE]: what came is the reply

    @staticmethod
    def _streamed(text: list[str], finish, logprobs: list, usage) -> dict:
        return {"choices": [{"message": {"content": "".join(text)}, "finish_reason": finish, "logprobs": {"content": logprobs}}],
                "usage": usage or {}}

    def _parse(self, payload) -> tuple[str, str, tuple[float, ...], dict]:
        def garbage(what: str) -> BackendError:
            return BackendError(self._where(f"answered HTTP 200 with {what}: {self._snippet(json.dumps(payload))!r}"))

        if not isinstance(payload, dict):
            raise garbage("JSON that is not an object")
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise garbage("no choices")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if not isinstance(text, str):
            raise garbage("no message content")
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        logprobs: tuple[float, ...] = ()
        content = choice["logprobs"].get("content") if isinstance(choice.get("logprobs"), dict) else None
        if content:
            try:
                logprobs = tuple(float(t["logprob"]) for t in content)
            except (KeyError, TypeError, ValueError):
                raise garbage("malformed logprobs") from None
        usage = payload.get("usage")
        return text, finish, logprobs, usage if isinstance(usage, dict) else {}

    # -- messages that never carry the key -----------------------------------------------------
    def _where(self, problem: str) -> str:
        return self._scrub(f"agent {self.agent_name!r}: endpoint {self.url}: {problem}")

    def _key_rejected(self, status: int) -> str:
        hint = f"check the environment variable {self.spec.api_key_env}" if self.spec.api_key_env else "it needs a key: set api_key_env"
        return self._where(f"endpoint rejected the API key (HTTP {status}); {hint}")

    def _detail(self, response: httpx.Response) -> str:
        try:
            error = response.json().get("error")
            text = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            text = response.text
        return f": {self._snippet(str(text))}" if text else ""

    def _snippet(self, text: str) -> str:
        return self._scrub(text)[:_SNIPPET]

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text



def _count(usage: dict, key: str, fallback: int) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and value >= 0 else fallback


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (httpx.TimeoutException, TimeoutError)):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


__all__ = ["OpenAIBackend"]
