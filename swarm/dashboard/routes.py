"""The dashboard's HTTP routes, part of the gateway's app (so under its rules: keys, the loopback
Host check, body limits and timeouts, JSON errors).

    GET  /dashboard                        the page (HTML; its JS and CSS beside it)
    GET  /dashboard/api/state              the view as JSON
    GET  /dashboard/api/events             the view after each poll, as server-sent events
    POST /dashboard/api/agents             add an agent: {"yaml": "<one agent, as in a topology>"}
    POST /dashboard/api/agents/NAME/remove remove it gracefully (it drains first)
    POST /dashboard/api/agents/NAME/kill   crash it (peers find out by themselves)

The browser sends the key as `Authorization: Bearer` on `fetch()` calls, the event stream
included (read from the response body, since EventSource cannot send headers): the key is typed
once and kept in the tab's sessionStorage, never put in a URL (logs) or a cookie (no CSRF: a
cross-site page cannot send that header without a CORS preflight, which this server never grants).
Actions need a key: a gateway without keys (loopback only) serves a read-only dashboard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from swarm.dashboard.poller import Control, Poller
from swarm.dashboard.view import SwarmView
from swarm.errors import AgentExists, SwarmError, TopologyError, UnknownAgent
from swarm.gateway.app import Access, read_body
from swarm.gateway.limits import GatewaySettings, retry_after
from swarm.gateway.schema import BadRequest, parse_json
from swarm.gateway.sse import ClosingStreamingResponse
from swarm.topology import parse_agent_spec

log = structlog.get_logger("swarm.dashboard")
MAX_STREAMS = 32  # event streams open at once, all viewers together
STREAM_S = 600.0  # a stream ends after this long; the page reconnects (so no connection is held forever)
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
HEADERS = {  # the page loads only its own files, cannot be framed (clickjacking an action), and leaks no URL
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}


def dashboard_routes(control: Control, swarm_name: str, settings: GatewaySettings, access: Access) -> list[tuple[str, Callable, list[str]]]:
    """(path, handler, methods) for each route; the gateway's app wraps and mounts them (`build_app(..., more=...)`)."""
    keyed, rates, local_only, authorised, base_dir = access.keyed, access.rates, access.local_only, access.authorised, settings.agent_base_dir
    poller = Poller(control, SwarmView(swarm_name))
    static = files("swarm.dashboard") / "static"
    page = (static / "index.html").read_text("utf-8").replace("{{swarm}}", _html(swarm_name)).replace("{{keyed}}", str(keyed).lower())
    assets = {name: (static / name).read_bytes() for name in ASSETS}
    streams = 0

    async def index(request: Request) -> Response:
        local_only(request)
        return Response(page, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def asset(request: Request) -> Response:
        local_only(request)
        name = request.path_params["name"]
        if name not in assets:
            raise BadRequest(404, f"no route {request.url.path}", "not_found")
        return Response(assets[name], media_type=ASSETS[name], headers=HEADERS)

    async def state(request: Request) -> Response:
        authorised(request)
        return JSONResponse(await _first(poller), headers=HEADERS)

    async def events(request: Request) -> Response:
        nonlocal streams
        authorised(request)
        if streams >= MAX_STREAMS:
            raise BadRequest(429, f"{MAX_STREAMS} dashboard streams are open already; retry later", "too_many_streams",
                             kind="rate_limit_error", headers={"Retry-After": "5"})
        await _first(poller)
        streams += 1

        async def send():
            nonlocal streams
            try:
                async with asyncio.timeout(STREAM_S):
                    async for view in poller.watch():
                        yield f"data: {json.dumps(view)}\n\n"
            except TimeoutError:
                pass
            finally:
                streams -= 1

        return ClosingStreamingResponse(send(), media_type="text/event-stream", headers={**HEADERS, "X-Accel-Buffering": "no"})

    async def acting(request: Request, action: str, agent: str) -> dict:
        """The checks every action passes (a key, JSON, the rate, the body's limits); the body's JSON object."""
        local_only(request)
        if not keyed:
            raise BadRequest(403, "this dashboard has no API keys, so it is read-only: serve it with --api-keys-file "
                             "(or SWARM_API_KEYS) to add, remove or kill agents", "read_only")
        who = authorised(request)
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            raise BadRequest(415, "send the body as Content-Type: application/json", "unsupported_media_type")
        wait = rates.take(who)
        if wait:
            raise BadRequest(429, "rate limit for this key exceeded", "rate_limit_exceeded", kind="rate_limit_error",
                             headers={"Retry-After": retry_after(wait)})
        body = parse_json(await read_body(request, settings.max_body_bytes, settings.body_timeout_s) or b"{}")
        if not isinstance(body, dict):
            raise BadRequest(400, "the body must be a JSON object", "invalid_request")
        log.info("dashboard action", swarm=swarm_name, action=action, agent=agent, key=who)
        return body

    async def add(request: Request) -> Response:
        body = await acting(request, "add", "")
        text = body.get("yaml")
        if not isinstance(text, str) or not text.strip():
            raise BadRequest(400, "give the agent as {\"yaml\": \"name: ...\\ncost: ...\\nbackend: {...}\"}", "invalid_request", "yaml")
        try:
            spec = parse_agent_spec(text, "<the dashboard's agent>", None if base_dir is None else Path(base_dir))
        except TopologyError as exc:
            raise BadRequest(400, str(exc), "invalid_agent", "yaml") from None
        try:
            name = await control.add(spec)
        except SwarmError as exc:
            raise BadRequest(409 if isinstance(exc, AgentExists) else 502, str(exc)[:2000], "add_failed") from None
        log.info("dashboard action done", swarm=swarm_name, action="add", agent=name)
        return JSONResponse({"added": name})

    def change(kill: bool) -> Callable:
        async def run(request: Request) -> Response:
            name = request.path_params["name"]
            await acting(request, "kill" if kill else "remove", name)
            try:
                await control.remove(name, kill)
            except UnknownAgent as exc:
                raise BadRequest(404, str(exc)[:2000], "no_such_agent") from None
            except SwarmError as exc:
                raise BadRequest(502, str(exc)[:2000], "action_failed") from None
            log.info("dashboard action done", swarm=swarm_name, action="kill" if kill else "remove", agent=name)
            return JSONResponse({"killed" if kill else "removed": name})

        return run

    return [
        ("/dashboard", index, ["GET"]),
        ("/dashboard/api/state", state, ["GET"]),
        ("/dashboard/api/events", events, ["GET"]),
        ("/dashboard/api/agents", add, ["POST"]),
        ("/dashboard/api/agents/{name}/remove", change(kill=False), ["POST"]),
        ("/dashboard/api/agents/{name}/kill", change(kill=True), ["POST"]),
        ("/dashboard/{name}", asset, ["GET"]),
    ]


async def _first(poller: Poller) -> dict:
    try:
        async with asyncio.timeout(15):
            return await poller.snapshot()
    except TimeoutError:
        raise BadRequest(503, "no agent of the swarm answered the dashboard's status poll", "unavailable", kind="server_error") from None


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


