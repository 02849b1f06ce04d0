"""Everything that touches Ray, and nothing else does.

- `connect`: finding or starting a Ray cluster (one fast TCP probe, never minutes of retries),
  namespaces, the agents' actor names, Ray tasks.
- `transport`: the `Transport` over Ray actor calls (agents to agents, clients to entries).
- `actor`: `AgentActor`, the process that hosts one `AgentNode`.
- `metrics`: agents' and gateways' metrics on Ray's Prometheus endpoint.
- `swarm`: `Swarm`, `launch` and `attach`: a swarm of agent actors and its handle.
- `gateway`: the HTTP gateway as a Ray actor.

The routing core (`swarm.node`, `swarm.membership`, `swarm.entry`, the policies, the protocol,
the in-memory transport, `swarm.testing`) imports without Ray.
"""
