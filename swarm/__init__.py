"""swarm: distributed self-routing of LLM agents on Ray.

Every LLM is an agent that answers a query if it judges itself competent, or says
"I don't know!" and passes it to a stronger peer. No central router.
"""

from typing import Any

# Imported on first use (PEP 562), so that `import swarm.node` or `swarm.testing` loads neither Ray
# nor pydantic models it does not need: the name -> module it lives in.
_LAZY = {
    "AgentStatus": "swarm.api", "Swarm": "swarm.api", "attach": "swarm.api", "launch": "swarm.api",
    "Answer": "swarm.client",
    **dict.fromkeys(("DeadlineExceeded", "NoCapableAgent", "PeerUnreachable", "ProtocolError", "QueryError", "QueryTooLarge",
                     "SwarmError", "TopologyError"), "swarm.errors"),
    "SCENARIOS": "swarm.prompts",
    **dict.fromkeys(("AgentSpec", "Topology", "load_agent_spec", "load_topology"), "swarm.topology"),
}

__all__ = [
    "SCENARIOS",
    "AgentSpec",
    "AgentStatus",
    "Answer",
    "DeadlineExceeded",
    "NoCapableAgent",
    "PeerUnreachable",
    "ProtocolError",
    "QueryError",
    "QueryTooLarge",
    "Swarm",
    "SwarmError",
    "Topology",
    "TopologyError",
    "attach",
    "launch",
    "load_agent_spec",
    "load_topology",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'swarm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
