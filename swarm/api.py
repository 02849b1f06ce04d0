"""The Python API: launch a swarm onto Ray, ask it questions, change its membership while it serves.

The implementation lives with the rest of the Ray code in `swarm.cluster.swarm`; this module is
the stable place to import it from.
"""

from swarm.cluster.connect import running_cluster
from swarm.cluster.swarm import AgentStatus, Swarm, attach, launch

__all__ = ["AgentStatus", "Swarm", "attach", "launch", "running_cluster"]
