"""swarm: distributed self-routing of LLM agents on Ray.

Every LLM is an agent that answers a query if it judges itself competent, or says
"I don't know!" and passes it to a stronger peer. No central router.
"""

from swarm.api import AgentStatus, Swarm, attach, launch
from swarm.client import Answer
from swarm.errors import (
    DeadlineExceeded, NoCapableAgent, PeerUnreachable, ProtocolError, QueryError, QueryTooLarge, SwarmError, TopologyError,
)
from swarm.prompts import SCENARIOS
from swarm.topology import AgentSpec, Topology, load_agent_spec, load_topology

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
