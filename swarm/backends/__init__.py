"""Backends: how an agent produces text. `build_backend` turns a topology backend block into one."""

from __future__ import annotations

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.backends.replay import ReplayBackend, ReplayTable


def build_backend(spec, agent_name: str, gamma: float = 0.5) -> Backend:
    """Construct (but do not start: nothing heavy loads here) the backend a topology's block describes."""
    if spec.kind == "replay":
        return ReplayBackend.from_spec(spec, agent_name, gamma=gamma)
    if spec.kind == "transformers":
        from swarm.backends.transformers import TransformersBackend  # torch is an optional extra

        return TransformersBackend(spec, agent_name)
    if spec.kind == "vllm":
        from swarm.backends.vllm import VLLMBackend  # vllm itself is imported only in start()

        return VLLMBackend(spec, agent_name)
    if spec.kind == "openai":
        from swarm.backends.openai_http import OpenAIBackend

        return OpenAIBackend(spec, agent_name)
    raise ValueError(f"agent {agent_name!r}: unknown backend kind {spec.kind!r}")


__all__ = ["Backend", "Generation", "GenerationRequest", "ReplayBackend", "ReplayTable", "build_backend"]
