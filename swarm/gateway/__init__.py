"""An OpenAI-compatible HTTP front door to a running swarm.

    POST /v1/chat/completions   model "<swarm>" or "<swarm>:<scenario>"; stream=true for SSE
    GET  /v1/models             the swarm and its scenarios
    GET  /health                200 while at least one agent is live, else 503
    GET  /dashboard             the live page of the swarm (swarm.dashboard), under the same keys and rules

Why Starlette and uvicorn inside a Ray actor, not Ray Serve: Ray Serve would add a controller
actor and an HTTP proxy actor per node, and every request would cross proxy -> replica -> entry
agent: two extra processes and an extra Ray call on a path whose point is that nothing sits in
the middle. On a 2-core machine those processes compete with the agents. The gateway needs none
of Serve's features (replica autoscaling, model composition, batching): it is a thin, stateless
client that hands each query to an entry agent and awaits the one result, so one async actor
running uvicorn on its own event loop does the job with one hop. To scale it, start more
gateways (one per node) behind any load balancer; they share nothing.

Streaming: with `stream=true` the gateway sends the answering agent's text as SSE chunks as the
entry agent receives them (`EntryClient.stream`; README, "Streaming"), and the routing trace in the
final chunk's `swarm` field.
"""

from typing import Any

from swarm.gateway.limits import GatewaySettings, load_api_keys

__all__ = ["Gateway", "GatewaySettings", "load_api_keys", "serve"]


def __getattr__(name: str) -> Any:
    """`serve` and `Gateway` live with the rest of the Ray code (`swarm.cluster.gateway`); imported on first use."""
    if name in ("Gateway", "serve"):
        from swarm.cluster import gateway

        return getattr(gateway, name)
    raise AttributeError(f"module 'swarm.gateway' has no attribute {name!r}")
