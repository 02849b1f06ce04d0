"""The gateway's HTTP application (Starlette): /v1/chat/completions, /v1/models, /health.

Every failure leaves as an OpenAI-shaped JSON error with the right status; a client's mistake is
logged at info level at most, a fault of ours at error level, and no response ever carries a
stack trace. Order of checks for a completion: key (401), rate (429), body size (413), JSON and
shape (400), model (404), prompt size (413), queue (429), then the swarm (504 past the deadline,
503 when no agent can answer).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from swarm.errors import DeadlineExceeded, NoCapableAgent, QueryError, QueryTooLarge
from swarm.gateway import schema
from swarm.entry import EntryClient
from swarm.gateway.limits import (
    Admission,
    GatewaySettings,
    KeyRing,
    Overloaded,
    RateLimiter,
    retry_after,
)
from swarm.gateway.schema import BadRequest
from swarm.prompts import scenario_alpha

log = structlog.get_logger("swarm.gateway")
_DRAIN_LIMIT = 64 << 20  # an oversize body up to this size is read and dropped, so the client sees the 413


class Observer:
    """Gateway metrics hook; the Ray actor exports these through ray.util.metrics."""

    def request(self, route: str, status: int, seconds: float) -> None:
        pass


def build_app(entry: EntryClient, settings: GatewaySettings, observer: Observer | None = None) -> Starlette:
    keys = KeyRing(settings.api_keys)
    rates = RateLimiter(settings.rate_per_s, settings.burst)
    admission = Admission(settings.max_in_flight, settings.max_queue)
    observer = observer or Observer()
    swarm_name = entry.swarm

    def authorised(request: Request) -> str:
        who = keys.identify(request.headers.get("authorization"))
        if who is None:
            raise BadRequest(401, "missing or invalid API key: send 'Authorization: Bearer <key>'", "invalid_api_key")
        return who

    async def chat_completions(request: Request) -> Response:
        who = authorised(request)
        wait = rates.take(who)
        if wait:
            raise BadRequest(429, f"rate limit of {settings.rate_per_s:g} requests/s for this key exceeded", "rate_limit_exceeded",
                             kind="rate_limit_error", headers={"Retry-After": retry_after(wait)})
        body = await _read_body(request, settings.max_body_bytes)
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(400, f"the body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})", "invalid_json") from None
        req = schema.parse_request(data)
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
        try:
            async with admission.slot(began + deadline_s):
                remaining = deadline_s - (loop.time() - began)
                if remaining <= 0:
                    raise TimeoutError
                answer = await entry.ask(text, alpha=alpha, deadline_s=remaining)
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
        if not req.stream:
            return JSONResponse(schema.completion(answer, req.model))
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        events = [f"data: {json.dumps(c)}\n\n" for c in schema.chunks(answer, req.model, include_usage)] + ["data: [DONE]\n\n"]
        return StreamingResponse(iter(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def models(request: Request) -> Response:
        authorised(request)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "swarm"} for m in schema.model_ids(swarm_name)]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        entry.refresh_soon()  # an idle gateway's view is brought up to date by the next health check
        live = entry.entries()
        body = {"status": "ok" if live else "unavailable", "swarm": swarm_name, "live_agents": live,
                "in_flight": admission.in_flight, "waiting": admission.waiting}
        return JSONResponse(body, status_code=200 if live else 503)

    routes = [
        Route("/v1/chat/completions", _observed(chat_completions, "chat", observer), methods=["POST"]),
        Route("/v1/models", _observed(models, "models", observer), methods=["GET"]),
        Route("/health", _observed(health, "health", observer), methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _internal_error})


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


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or BadRequest(413) past `limit`. An oversize body is read to its end (up to a
    bound) so the client, still sending, sees the 413 rather than a reset connection."""
    declared = request.headers.get("content-length", "")
    too_large = BadRequest(413, f"the request body exceeds {limit:,} bytes", "request_too_large")
    if declared.isdigit() and int(declared) > limit:
        if int(declared) <= _DRAIN_LIMIT:
            async for _ in request.stream():
                pass
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


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
