"""swarm-runtime (swarm-runtime-skip): the replay's `swarm-probe` (`swarm-skip`) agents run by the runtime itself. Each model becomes an
`AgentNode` (the code a launched swarm runs) on an in-memory network: its probe, its value curves,
advertised by gossip per region of the region map, each query's region found by the agent it
enters at and carried on the wire, next hops, traces. Only two things stand in for a launched
replay swarm's parts: the backend reads its answers from the outcome matrix and hands the probe
the query's embedding as its "hidden states" (the replayed probes read embeddings), and the region
map reads the embeddings already computed instead of running the encoder again.

With the next hop "next" it decides as `swarm-probe` decides, with "best" as `swarm-skip`, query for query, unless an advertised curve's rounding (to 4
decimals on the wire) moves a decision that was within 0.00005 of its bar: the number of queries
whose path differs from the replay's is reported.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from swarm.assess.probe import Probe
from swarm.assess.regions import RegionMap
from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.eval.records import Step

MAX_SETTLE_ROUNDS = 200  # gossip rounds for the curves to settle before the first query


class MatrixBackend(Backend):
    """One model's recorded answers; its "hidden states" are the query's embedding (one layer)."""

    reads_states = True

    def __init__(self, answers: Mapping[str, str], vectors: Mapping[str, np.ndarray]) -> None:
        self.answers, self.vectors = answers, vectors

    async def generate(self, request: GenerationRequest) -> Generation:
        return Generation(self.answers.get(request.query, ""), 1, 1, 0.0)

    async def assess(self, request: GenerationRequest, judge) -> Generation:
        if not judge(np.asarray(self.vectors[request.query], dtype=np.float32)[None, :]):
            return Generation("", 1, 0, 0.0, finish_reason="reject")
        return await self.generate(request)


@dataclasses.dataclass(frozen=True)
class KnownRegions(RegionMap):
    """A region map whose queries' embeddings are known already (same map, same digest)."""

    vectors: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def regions_of(self, texts: Sequence[str]) -> np.ndarray:
        return self.assign(np.stack([self.vectors[t] for t in texts])) if texts else np.zeros(0, dtype=np.int64)


def route_in_runtime(probes: Mapping[str, Probe], costs: Mapping[str, float], queries: Sequence[str], answers: Mapping[str, Mapping[str, str]],
                     vectors: Mapping[str, np.ndarray], alphas: Sequence[float], regions: RegionMap | None,
                     train_regions: np.ndarray | None, next_hop: str = "next") -> dict[float, list[list[Step]]]:
    """Per alpha, each query's steps through a swarm of AgentNodes, one per model (`answers[model][query]`),
    each deciding with its probe (unfamiliar queries on its prior, as the replay does) and, under `regions`,
    the curves per region of its validation queries (`train_regions`, in the probes' order); `next_hop`
    as a topology's `defaults.next_hop`."""
    return asyncio.run(_route(probes, costs, queries, answers, vectors, alphas, regions, train_regions, next_hop))


async def _route(probes, costs, queries, answers, vectors, alphas, regions, train_regions, next_hop) -> dict[float, list[list[Step]]]:
    from swarm.node import NodeConfig
    from swarm.policies import ProbePolicy
    from swarm.testing import MemorySwarm

    order = sorted(probes, key=lambda m: (costs[m], m))
    region_map = None if regions is None else KnownRegions(regions.centroids, regions.encoder, vectors)
    config = NodeConfig(regions=region_map, max_hops=len(order), hop_overhead_s=0.0, next_hop=next_hop)
    swarm = MemorySwarm(config, max_hops=len(order), deadline_s=600.0)
    for m in order:
        probe = probes[m]
        if region_map is not None:  # the probe records its validation queries' regions, as `swarm launch` has it do
            probe = copy.copy(probe)
            probe.meta = dataclasses.replace(probe.meta, regions=region_map.digest)
            probe.val_region = np.asarray(train_regions, dtype=np.int16)
        swarm.node(m, costs[m], MatrixBackend(answers[m], vectors), ProbePolicy.from_probe(probe, unfamiliar="prior"))
    async with swarm:
        await swarm.start_all(background=False)
        await _settle(swarm)
        out = {}
        for a in alphas:
            results = await swarm.ask_many(list(queries), alpha=a, concurrency=32)
            out[a] = [_steps(r) for r in results]
        return out


async def _settle(swarm) -> None:
    """Gossip until no agent's advertised curves change and every agent sees every other's."""
    nodes = list(swarm.nodes.values())

    def seen() -> list:
        return [(n.membership.self_entry.curve, n.membership.self_entry.region_curves,
                 [(o.membership.get(p.name).curve, o.membership.get(p.name).region_curves) for o in nodes for p in nodes])
                for n in nodes]

    before = None
    for _ in range(MAX_SETTLE_ROUNDS):
        for node in nodes:
            await node.upkeep.gossip_round()
        now = seen()
        if now == before and all(o.membership.get(p.name).curve == p.membership.self_entry.curve for o in nodes for p in nodes):
            return
        before = now
    raise RuntimeError(f"the value curves did not settle in {MAX_SETTLE_ROUNDS} gossip rounds")


def _steps(result) -> list[Step]:
    if not getattr(result, "agent", ""):
        raise RuntimeError(f"a replayed query failed in the runtime: {result}")
    return [Step(h.agent, h.decision) for h in result.trace]
