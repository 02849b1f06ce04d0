"""Backends: how an agent produces text. `build_backend` turns a topology backend block into one."""

from __future__ import annotations

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.backends.replay import ReplayBackend, ReplayTable


def build_backend(spec, agent_name: str, gamma: float = 0.5) -> Backend:
    """Construct (but do not start) the backend a topology's backend block describes."""
    if spec.kind == "replay":
        return ReplayBackend.from_spec(spec, agent_name, gamma=gamma)
    raise ValueError(f"agent {agent_name!r}: unknown backend kind {spec.kind!r}")


__all__ = ["Backend", "Generation", "GenerationRequest", "ReplayBackend", "ReplayTable", "build_backend"]
