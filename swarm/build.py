"""Turn a topology's agent spec into the parts of an AgentNode: membership entry, policy, backend, config."""

from __future__ import annotations

from swarm.backends import Backend, build_backend
from swarm.node import NodeConfig
from swarm.policies import Policy, build_policy
from swarm.protocol import Member


def member_for(spec, topology) -> Member:
    links = sorted(topology.neighbours().get(spec.name, set()) | set(spec.links))
    return Member(name=spec.name, cost=spec.cost, links=links)


def node_config(topology) -> NodeConfig:
    d = topology.defaults
    return NodeConfig(
        routing=topology.routing, gossip_interval_s=d.gossip_interval_s, ping_interval_s=d.ping_interval_s,
        ping_timeout_s=d.ping_timeout_s, suspect_timeout_s=d.suspect_timeout_s, drain_timeout_s=d.drain_timeout_s,
        max_query_chars=d.max_query_chars, max_hops=d.max_hops, max_budget_s=d.max_deadline_s, forget_after_s=d.forget_after_s, generation_share=d.generation_share,
        next_hop=d.next_hop, regions=topology.region_map(),
    )


def build_parts(spec, topology) -> tuple[Member, Policy, Backend]:
    """Raises BackendError when the policy cannot work with the backend (checked before anything loads)."""
    policy, backend = build_policy(topology.policy_for(spec)), build_backend(spec.backend, spec.name, topology.defaults.gamma)
    policy.check(backend)
    return member_for(spec, topology), policy, backend
