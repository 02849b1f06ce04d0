"""Backends: how an agent produces text. `build_backend` turns a topology backend block into one."""

from __future__ import annotations

import importlib

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.backends.replay import ReplayBackend, ReplayTable
from swarm.prompts import GAMMA


# A topology's backend kind -> the module and class that serve it, imported only when used (torch,
# vLLM and the HTTP client are optional extras). Each class has from_spec(spec, agent_name, gamma).
BACKENDS: dict[str, tuple[str, str]] = {
    "replay": ("swarm.backends.replay", "ReplayBackend"),
    "transformers": ("swarm.backends.transformers", "TransformersBackend"),
    "vllm": ("swarm.backends.vllm", "VLLMBackend"),
    "openai": ("swarm.backends.openai_http", "OpenAIBackend"),
}


def build_backend(spec, agent_name: str, gamma: float = GAMMA) -> Backend:
    """Construct (but do not start: nothing heavy loads here) the backend a topology's block describes."""
    where = BACKENDS.get(spec.kind)
    if where is None:
        raise ValueError(f"agent {agent_name!r}: unknown backend kind {spec.kind!r} (expected one of: {', '.join(BACKENDS)})")
    module, name = where
    return getattr(importlib.import_module(module), name).from_spec(spec, agent_name, gamma)


__all__ = ["Backend", "Generation", "GenerationRequest", "ReplayBackend", "ReplayTable", "build_backend"]
