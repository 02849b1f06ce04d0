"""A real OpenAI-compatible HTTP server for tests: aiohttp on 127.0.0.1, backed by a swarm Backend.

`POST /v1/chat/completions` turns the chat request into a GenerationRequest (the last user
message is the query; the system prompt allows a rejection when it mentions the reject phrase,
as `swarm.prompts.scenario_instruction` does) and answers with the backend's Generation as a
chat.completion: usage, finish_reason and, when asked, logprobs. `GET /v1/models` lists the one
served model. A request with `stream: true` is answered as server-sent events, each piece the
backend streams (`GenerationRequest.on_text`) as a chunk the moment it comes, then the final chunk,
the usage chunk when `stream_options.include_usage` asks, and `[DONE]`. It runs in a thread with its own event loop, so a test can drive a client with
`asyncio.run` in its own thread.

Misbehaviour, set on the instance at any time (chat requests only; /models stays healthy):
- `api_key`: require `Authorization: Bearer <api_key>`; 401 otherwise (echoing the key sent, as
  real endpoints do, to prove the client never repeats it).
- `fail(status, times, retry_after=None, body=None)`: the next `times` chat requests get `status`.
- `delay_s`: sleep before answering (longer than the client's timeout: a slow endpoint).
- `garbage`: "not_json" | "no_choices" | "no_content": a 200 the client cannot use.
- `drop_connections`: the next N chat requests get half a response, then the connection closes.
- `context_chars`: prompts longer than this get vLLM's 400 "maximum context length" error.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

from swarm.backends.base import Backend, GenerationRequest
from swarm.prompts import REJECT_PHRASE

_ALPHA = re.compile(r"alpha = ([0-9.]+)")


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    authorization: str | None
    body: dict | None
    at: float = field(default_factory=time.monotonic)


class OpenAIServer:
    def __init__(self, backend: Backend, model: str = "test-model", api_key: str | None = None) -> None:
        self.backend, self.model, self.api_key = backend, model, api_key
        self.requests: list[Seen] = []
        self.delay_s = 0.0
        self.garbage: str | None = None
        self.drop_connections = 0
        self.context_chars: int | None = None
        self._faults: list[tuple[int, str | None, dict | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- control from the test thread ----------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def fail(self, status: int, times: int = 1, retry_after: str | None = None, body: dict | None = None) -> None:
        self._faults.extend([(status, retry_after, body)] * times)

    def start(self) -> OpenAIServer:
        ready = threading.Event()
        failed: list[BaseException] = []
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._open())
            except BaseException as exc:  # reported in the test thread, not lost in this one
                failed.append(exc)
                self._loop.close()
                return
            finally:
                ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="openai-test-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test server did not start within 10 s")
        if failed:
            self._thread.join()
            self._thread = None
            raise RuntimeError("test server did not start") from failed[0]
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection: the endpoint is down."""
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    # -- the server ----------------------------------------------------------------------------
    async def _open(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a client that gives up (timeout) cancels its slow handler.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        sent = request.headers.get("Authorization")
        if self.api_key is None or sent == f"Bearer {self.api_key}":
            return None
        key = (sent or "").removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error",
                                            "code": "invalid_api_key"}}, status=401)

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(Seen("GET", request.path, request.headers.get("Authorization"), None))
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "swarm-tests"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(Seen("POST", request.path, request.headers.get("Authorization"), body))
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        if self._faults:
            status, retry_after, error = self._faults.pop(0)
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response(error or {"error": {"message": f"simulated HTTP {status}"}}, status=status, headers=headers)
        if self.drop_connections:
            self.drop_connections -= 1
            response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b'{"id": "chatcmpl-dropped", "choices": [')
            request.transport.close()
            return response
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.garbage == "not_json":
            return web.Response(text="<html><body>502 Bad Gateway from the proxy</body></html>", content_type="text/html")
        if self.garbage == "no_choices":
            return web.json_response({"object": "chat.completion", "choices": []})
        if self.garbage == "no_content":
            return web.json_response({"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant"}}]})
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                "type": "NotFoundError", "code": 404}}, status=404)
        messages = body.get("messages") or []
        prompt_chars = sum(len(m.get("content", "")) for m in messages)
        if self.context_chars is not None and prompt_chars > self.context_chars:
            return web.json_response({"error": {"message": f"This model's maximum context length is {self.context_chars} tokens. "
                                                           f"However, you requested {prompt_chars} tokens.", "type": "BadRequestError"}}, status=400)
        if body.get("stream"):
            return await self._stream(request, body, messages)
        return web.json_response(await self._complete(body, messages))

    def _request(self, body: dict, messages: list[dict], on_text=None) -> GenerationRequest:
        system = " ".join(m["content"] for m in messages if m.get("role") == "system")
        query = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        alpha = _ALPHA.search(system)
        return GenerationRequest(
            query_id=f"http-{len(self.requests)}", query=query, alpha=float(alpha.group(1)) if alpha else 0.5,
            allow_reject=REJECT_PHRASE in system, messages=messages, max_tokens=body.get("max_tokens"),
            logprobs=bool(body.get("logprobs")), on_text=on_text,
        )

    async def _stream(self, request: web.Request, body: dict, messages: list[dict]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        generation = asyncio.ensure_future(self.backend.generate(self._request(body, messages, pieces.put_nowait)))
        generation.add_done_callback(lambda _: pieces.put_nowait(None))
        base = {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion.chunk", "created": int(time.time()), "model": self.model}

        async def send(choices: list, **extra) -> None:
            await response.write(b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n")

        try:
            await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            while (piece := await pieces.get()) is not None:
                await send([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            gen = generation.result()
            await send([{"index": 0, "delta": {}, "finish_reason": "length" if gen.finish_reason == "length" else "stop"}])
            if (body.get("stream_options") or {}).get("include_usage"):
                await send([], usage={"prompt_tokens": gen.tokens_in, "completion_tokens": gen.tokens_out,
                                      "total_tokens": gen.tokens_in + gen.tokens_out})
            await response.write(b"data: [DONE]\n\n")
        finally:
            generation.cancel()  # the client went away mid-stream: the backend stops
        return response

    async def _complete(self, body: dict, messages: list[dict]) -> dict:
        want_logprobs = bool(body.get("logprobs"))
        gen = await self.backend.generate(self._request(body, messages))
        logprobs = None
        if want_logprobs:
            tokens = gen.text.split() or [""]
            logprobs = {"content": [{"token": tok, "logprob": lp, "bytes": None, "top_logprobs": []}
                                    for tok, lp in zip(tokens + [""] * len(gen.token_logprobs), gen.token_logprobs)]}
        return {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()), "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text}, "logprobs": logprobs,
                         "finish_reason": "length" if gen.finish_reason == "length" else "stop"}],
            "usage": {"prompt_tokens": gen.tokens_in, "completion_tokens": gen.tokens_out, "total_tokens": gen.tokens_in + gen.tokens_out},
        }


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
