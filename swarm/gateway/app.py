"""The gateway's HTTP application (Starlette): /v1/chat/completions, /v1/models, /health, and routes
added under the same checks (`Access`): the dashboard's (swarm.dashboard.routes).

Every failure leaves as an OpenAI-shaped JSON error with the right status; a client's mistake is
logged at info level at most, a fault of ours at error level, and no response ever carries a
stack trace. Order of checks for a completion: without keys, the Host header (421) and the
content type (415); the key (401), its rate (429) and its requests at once (429); the body's
size (413) and its arrival within `body_timeout_s` (408), JSON and shape (400), model (404),
prompt size (413), queue (429), then the swarm (504 past the deadline, 503 when no agent can
answer, 502 when the call to it failed).

Without keys the gateway serves loopback only, and then any web page the user opens could post
to it: a cross-site form can send `text/plain` without a preflight, and a DNS-rebinding page
reaches it under its own host name. So a keyless gateway takes only `application/json` bodies
and only Host headers that name loopback (with the bound port, or none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm.errors import DeadlineExceeded, NoCapableAgent, QueryError, QueryTooLarge, SwarmError
from swarm.gateway import schema
from swarm.entry import EntryClient
from swarm.gateway.limits import (
    Admission,
    GatewaySettings,
    LOOPBACK,
    KeyRing,
    Overloaded,
    PerKey,
    RateLimiter,
    retry_after,
)
from swarm.gateway.schema import BadRequest
from swarm.gateway.sse import ClosingStreamingResponse
from swarm.prompts import scenario_alpha

log = structlog.get_logger("swarm.gateway")
_DRAIN_LIMIT = 64 << 20  # an oversize body up to this size is read and dropped, so the client sees the 413


class Observer:
    """Gateway metrics hook; the Ray actor exports these through ray.util.metrics."""

    def request(self, route: str, status: int, seconds: float) -> None:
        pass


@dataclass(frozen=True)
class Access:
    """The gateway's own checks, for routes added to its app: the loopback Host check of a keyless
    gateway (421), the key (401; returns its fingerprint), and each key's rate."""

    keyed: bool
    local_only: Callable[[Request], None]
    authorised: Callable[[Request], str]
    rates: RateLimiter


Routes = Callable[[Access], list[tuple[str, Callable, list[str]]]]  # (path, handler, methods) for each added route


def build_app(entry: EntryClient, settings: GatewaySettings, observer: Observer | None = None, more: Routes | None = None) -> Starlette:
    keys = KeyRing.of(settings)
    rates = RateLimiter(settings.rate_per_s, settings.burst)
    admission = Admission(settings.max_in_flight, settings.max_queue)
    per_key = PerKey(settings.max_in_flight_per_key)
    observer = observer or Observer()
    swarm_name = entry.swarm

    def local_only(request: Request) -> None:
        """Without keys: a Host header that names loopback, else 421 (a DNS-rebinding page names its own host)."""
        if not keys.enabled and not _loopback_host(request):
            raise BadRequest(421, "this gateway has no API keys and answers only to Host: localhost, 127.0.0.1 or [::1]",
                             "misdirected_request")

    def authorised(request: Request) -> str:
        local_only(request)
        who = keys.identify(request.headers.get("authorization"))
        if who is None:
            raise BadRequest(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
        return who

    async def chat_completions(request: Request) -> Response:
        who = authorised(request)
        if not keys.enabled and request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            raise BadRequest(415, "send the body as Content-Type: application/json", "unsupported_media_type")
        wait = rates.take(who)
        if wait:
            raise BadRequest(429, f"rate limit of {settings.rate_per_s:g} requests/s for this key exceeded", "rate_limit_exceeded",
                             kind="rate_limit_error", headers={"Retry-After": retry_after(wait)})
        if not keys.enabled:  # loopback only, one anonymous client: max_in_flight and max_queue bound it
            return await complete(request)
        if not per_key.take(who):
            raise BadRequest(429, f"this key already has {settings.max_in_flight_per_key} requests in progress; retry later",
                             "too_many_in_flight", kind="rate_limit_error", headers={"Retry-After": "1"})
        try:
            return await complete(request)
        finally:
            per_key.release(who)

    async def complete(request: Request) -> Response:
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        req = schema.parse_request(schema.parse_json(body))
        _, scenario = schema.split_model(req.model, swarm_name)
        alpha = scenario_alpha(scenario, req.alpha)
        text = schema.query_text(req.messages)
        tokens = schema.estimate_tokens(text)
        if tokens > settings.max_prompt_tokens:
            raise BadRequest(413, f"the prompt is about {tokens:,} tokens; this gateway takes at most {settings.max_prompt_tokens:,}",
                             "context_length_exceeded", "messages")
        limit = settings.deadline_s or entry.limits.deadline_s
        deadline_s = min(req.deadline_s or limit, limit)
        loop = asyncio.get_running_loop()
        began = loop.time()
        held = contextlib.AsyncExitStack()  # the admission slot: held until the answer (or the stream) ends
        items = None
        try:
            with _swarm_errors(settings, deadline_s):
                await held.enter_async_context(admission.slot(began + deadline_s))
                remaining = deadline_s - (loop.time() - began)
                if remaining <= 0:
                    raise TimeoutError
                target = None if req.target_latency_s is None else max(1e-3, req.target_latency_s - (loop.time() - began))
                q = entry.query(text, alpha=alpha, deadline_s=remaining, target_latency_s=target)
                if not req.stream:
                    return JSONResponse(schema.completion(await entry.send(q), req.model))
                items = entry.stream(q)
                first = await anext(items)  # routing failures still get their HTTP status; then the stream starts
        except BaseException:
            if items is not None:
                await items.aclose()
            await held.aclose()
            raise
        finally:
            if not req.stream:
                await held.aclose()
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = _events(q.query_id, req.model, include_usage, first, items, held, lambda: _swarm_errors(settings, deadline_s))
        # Started here: a generator that never ran is never finalised. Once started, a client gone while the body
        # is sent gets the query cancelled and the slot back as the response ends (ClosingStreamingResponse); one
        # gone before the response began, when the generator is collected.
        head = await anext(events)
        return ClosingStreamingResponse(_prepended(head, events), media_type="text/event-stream",
                                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def models(request: Request) -> Response:
        authorised(request)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "swarm"} for m in schema.model_ids(swarm_name)]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        """200 while an agent is live, else 503. Only the status, unless the caller may see more
        (a valid key; anyone on a keyless, loopback-only gateway): the agents and the load."""
        local_only(request)
        entry.refresh_soon()  # an idle gateway's view is brought up to date by the next health check
        live = entry.entries()
        body: dict = {"status": "ok" if live else "unavailable"}
        if keys.identify(request.headers.get("authorization")) is not None:
            body |= {"swarm": swarm_name, "live_agents": live, "in_flight": admission.in_flight, "waiting": admission.waiting}
        return JSONResponse(body, status_code=200 if live else 503)

    routes = [
        Route("/v1/chat/completions", _observed(chat_completions, "chat", observer), methods=["POST"]),
        Route("/v1/models", _observed(models, "models", observer), methods=["GET"]),
        Route("/health", _observed(health, "health", observer), methods=["GET"]),
    ]
    if more is not None:
        for path, handler, methods in more(Access(keys.enabled, local_only, authorised, rates)):
            routes.append(Route(path, _observed(handler, path.split("/")[1], observer), methods=methods))
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal_error})


@contextlib.contextmanager
def _swarm_errors(settings: GatewaySettings, deadline_s: float) -> Iterator[None]:
    """What comes of asking the swarm, as the HTTP error a client gets (429, 504, 413, 503, 502)."""
    try:
        yield
    except Overloaded:
        raise BadRequest(429, f"the gateway is at capacity ({settings.max_in_flight} in flight, {settings.max_queue} waiting); "
                         "retry later", "overloaded", kind="rate_limit_error", headers={"Retry-After": "1"}) from None
    except (TimeoutError, DeadlineExceeded):
        raise BadRequest(504, f"no answer within the deadline of {deadline_s:g} s", "deadline_exceeded", kind="timeout_error") from None
    except QueryTooLarge as exc:
        raise BadRequest(413, str(exc), "query_too_large", "messages") from None
    except NoCapableAgent as exc:
        raise BadRequest(503, f"no agent could answer: {exc}", "no_capable_agent", kind="server_error") from None
    except QueryError as exc:
        raise BadRequest(502, f"the swarm could not answer: {exc}", exc.code, kind="server_error") from None
    except (BadRequest, asyncio.CancelledError):
        raise
    except Exception as exc:  # noqa: BLE001 - the call into the swarm broke (a ProtocolError, a Ray error): upstream
        (log.warning if isinstance(exc, SwarmError) else log.error)("upstream fault", error=repr(exc)[:300])
        raise BadRequest(502, "the swarm's entry agent failed to answer; the gateway has logged why", "upstream_error",
                         kind="server_error") from None


async def _events(query_id: str, model: str, include_usage: bool, first, items, held: contextlib.AsyncExitStack,
                  errors: Callable[[], contextlib.AbstractContextManager]) -> AsyncIterator[str]:
    """Server-sent events of a streamed answer: the role, each piece of text as the answering agent
    generates it, the final chunk with the routing trace (`swarm`), the usage when asked for, [DONE].
    A failure once the stream has begun ends it with an OpenAI-shaped error event. The client going
    away closes this generator, which cancels the query along its path."""
    def event(body: dict) -> str:
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield event(schema.chunk(query_id, model, {"role": "assistant", "content": ""}))
        item = first
        while isinstance(item, str):
            yield event(schema.chunk(query_id, model, {"content": item}))
            item = await anext(items)
        for body in schema.last_chunks(item, model, include_usage):
            yield event(body)
        yield "data: [DONE]\n\n"
    except Exception as exc:  # noqa: BLE001 - the headers are sent: the error goes in the stream
        try:
            with errors():
                raise exc
        except BadRequest as bad:
            log.info("stream ended by an error", query_id=query_id, status=bad.status, code=bad.code)
            yield event(schema.error_body(bad.message, bad.kind, bad.code, bad.param))
    finally:
        await items.aclose()
        await held.aclose()


async def _prepended(head: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        yield head
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # `async for` leaves the generator it reads suspended when it is closed itself


def _observed(handler: Callable, route: str, observer: Observer) -> Callable:
    async def run(request: Request) -> Response:
        began = time.monotonic()
        try:
            response = await handler(request)
        except BadRequest as exc:
            response = _error(exc)
            log.info("request refused", route=route, status=exc.status, code=exc.code)
        except ClientDisconnect:
            log.info("client went away", route=route)
            response = Response(status_code=499)
        observer.request(route, response.status_code, time.monotonic() - began)
        return response

    return run


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The body, or BadRequest: 413 past `limit`, 408 when it has not all arrived within `timeout_s`
    (a slow or stalled client then holds nothing but its own connection, and that not for long).
    An oversize body is read to its end (up to a bound, within the same time) so the client,
    still sending, sees the 413 rather than a reset connection."""
    declared = request.headers.get("content-length", "")
    too_large = BadRequest(413, f"the request body exceeds {limit:,} bytes", "request_too_large")
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            if declared.isdigit() and int(declared) > limit:
                if int(declared) <= _DRAIN_LIMIT:
                    async for _ in request.stream():
                        pass
                raise too_large
            async for piece in request.stream():
                body += piece
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise BadRequest(408, f"the request body did not arrive within {timeout_s:g} s", "request_timeout",
                         headers={"Connection": "close"}) from None
    return bytes(body)


def _loopback_host(request: Request) -> bool:
    """The Host header names loopback (any port: a tunnel such as `ssh -L 9000:localhost:8000` sends
    its own; a DNS-rebinding page always sends its own host name, which is what this refuses)."""
    host = request.headers.get("host", "")
    if any(c in host for c in "/\\@?#"):
        return False
    try:
        url = urlsplit("//" + host)
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False
    return url.hostname in LOOPBACK


def _error(exc: BadRequest) -> JSONResponse:
    return JSONResponse(schema.error_body(exc.message, exc.kind, exc.code, exc.param), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (unknown path, wrong method), in the same JSON shape."""
    message = {404: f"no route {request.url.path}", 405: f"method {request.method} not allowed on {request.url.path}"}
    body = schema.error_body(message.get(exc.status_code, str(exc.detail)), "invalid_request_error", "not_found" if exc.status_code == 404 else None)
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("gateway fault", path=request.url.path, error=repr(exc)[:500])
    return JSONResponse(schema.error_body("internal error in the gateway; it has been logged", "server_error", "internal_error"), status_code=500)
