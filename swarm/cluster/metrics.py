"""An agent's metrics through `ray.util.metrics` (the gateway's are beside it, in `swarm.cluster.gateway`)."""

from __future__ import annotations

from swarm.node import NodeObserver

class RayMetrics(NodeObserver):
    """The agent's metrics through `ray.util.metrics`, served by Ray's Prometheus endpoint on each
    node (names gain Ray's `ray_` prefix there): queries, decisions, outcomes, latency, path hops."""

    _LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
    _HOPS = (0.5, 1.5, 2.5, 3.5, 4.5, 6.5, 8.5, 16.5)

    def __init__(self, swarm_name: str, agent: str) -> None:
        from ray.util.metrics import Counter, Histogram

        tags = ("swarm", "agent")
        self.tags = {"swarm": swarm_name, "agent": agent}
        self.queries = Counter("swarm_agent_queries", "queries this agent handled (answered, passed on or failed)", tag_keys=tags)
        self.decisions = Counter("swarm_agent_decisions", "this agent's decisions (answer, forced, reject)", tag_keys=(*tags, "decision"))
        self.outcomes = Counter("swarm_agent_outcomes", "queries leaving this agent, by outcome (ok or error code)", tag_keys=(*tags, "outcome"))
        self.latency = Histogram("swarm_agent_latency_s", "time a query spent at this agent and beyond (s)", boundaries=list(self._LATENCY_S), tag_keys=tags)
        self.speculations = Counter("swarm_agent_speculations", "queries this agent passed on while generating, by outcome: used "
                                    "(it rejected) or cancelled (it answered; the copy was wasted work)", tag_keys=(*tags, "outcome"))
        self.hops = Histogram("swarm_query_hops", "forwards between agents per query, counted at its entry agent", boundaries=list(self._HOPS), tag_keys=tags)

    def decided(self, decision: str) -> None:
        self.decisions.inc(1, {**self.tags, "decision": decision})

    def query_done(self, seconds: float, outcome: str, entry: bool, hops: int) -> None:
        self.queries.inc(1, self.tags)
        self.outcomes.inc(1, {**self.tags, "outcome": outcome})
        self.latency.observe(seconds, self.tags)
        if entry:
            self.hops.observe(hops, self.tags)

    def speculated(self, outcome: str) -> None:
        self.speculations.inc(1, {**self.tags, "outcome": outcome})
