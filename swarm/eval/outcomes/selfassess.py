"""A replayed model's self-assessment, learned from its own outcomes only, and the swarm's decisions.

Each agent fits the project's probe (`swarm.assess.probe.fit_probe`: logistic regression, L2 by
out-of-fold AUROC, Platt-scaled on the out-of-fold scores) on an embedding of the query (the
all-MiniLM-L6-v2 vector, in place of a model's hidden states: one "layer" of 384 states) against
its own correctness on the training queries, and nothing else: no other model's outcomes. It then
decides as the testbed's probe agents do (`swarm.policies.ProbePolicy`, confirm none: there are no
token log-probabilities in a replay): it answers when its calibrated P(I know) - alpha * cost clears
the value curve the next agent advertises (`swarm.assess.curves`, backward induction along the
cascade, cheapest first; the dearest agent answers whatever reaches it), and passes on a query
farther from its training queries than 99% of them (``unfamiliar``: pass). A rejection costs no
model call: the probe reads the query's embedding, not the model.

With a region map (`swarm.assess.regions`, k-means of the training queries' embeddings, shared by
all agents) each agent advertises one curve per region and a query is judged against the next
agent's curve of its own region (`swarm.assess.curves.region_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from swarm.assess.probe import Probe, fit_probe
from swarm.eval.records import Step
from swarm.policies import Ask, ProbePolicy

ENCODER = "all-MiniLM-L6-v2 embedding of the query"
LAYERS = {"query embedding": [0]}


def fit_agent(model: str, x: np.ndarray, correctness: np.ndarray, seed: int = 0) -> Probe:
    """`model`'s probe from its own outcomes: `x` (n, d) query embeddings, `correctness` in [0, 1]."""
    correctness = np.asarray(correctness, dtype=np.float64)
    if len(x) != len(correctness) or len(x) < 5:
        raise ValueError(f"model {model!r}: a probe needs at least 5 training queries with outcomes, got {len(correctness)}")
    probe, _ = fit_probe(model, ENCODER, np.asarray(x, dtype=np.float32)[:, None, :], correctness, correctness >= 0.5,
                         seed=seed, layer_sets=LAYERS)
    return probe


@dataclass
class ProbeSwarm:
    """Agents cheapest first, each deciding with its own probe and the next agent's advertised curve
    of the query's region (one region: the plain curves)."""

    policies: dict[str, ProbePolicy]  # model -> its policy
    costs: dict[str, float]  # model -> cost on the paper's scale
    curves: dict[str, list[tuple[float, ...]]]  # model -> the value curve it advertises, per region

    @classmethod
    def of(cls, probes: Mapping[str, Probe], costs: Mapping[str, float], bar: str = "curve", unfamiliar: str = "pass",
           regions: np.ndarray | None = None, k: int = 1) -> ProbeSwarm:
        """`regions`: the region of each validation (training) query, in the probes' order (None: one region)."""
        order = sorted(probes, key=lambda m: (costs[m], m))
        policies = {m: ProbePolicy.from_probe(probes[m], bar=bar, unfamiliar=unfamiliar) for m in order}
        curves: dict[str, list[tuple[float, ...]]] = {}
        successor = None
        for m in reversed(order):  # each agent's curves from its successor's: what the membership gossips
            if regions is None:
                curves[m] = [policies[m].curve(costs[m], successor[0] if successor else None)]
            else:
                curves[m] = policies[m].region_curves(costs[m], [list(c) for c in successor] if successor else None, regions, k)
            successor = curves[m]
        return cls(policies, {m: costs[m] for m in order}, curves)

    @property
    def order(self) -> list[str]:
        return list(self.policies)

    def route(self, ids: Sequence[str], x: np.ndarray, alpha: float, regions: np.ndarray | None = None) -> list[list[Step]]:
        """Per query, the steps of its walk along the cascade: rejections, then the answer (the
        dearest agent's is forced). `regions`: each query's region (None: region 0)."""
        order = self.order
        states = np.asarray(x, dtype=np.float32)[:, None, :]
        p = {m: self.policies[m].probe.p_know(states) for m in order[:-1]}
        familiar = {m: self.policies[m].probe.familiar(states) for m in order[:-1]}
        out = []
        for k, qid in enumerate(ids):
            region = 0 if regions is None else int(regions[k])
            steps = []
            for i, m in enumerate(order):
                if i == len(order) - 1:
                    steps.append(Step(m, "forced"))
                    break
                policy = self.policies[m]
                ask = Ask(qid, "", alpha, cost=self.costs[m], pass_curve=self.curves[order[i + 1]][region])
                if policy.answers(policy.p_max, ask) and policy.worth_generating(float(p[m][k]), bool(familiar[m][k]), ask):
                    steps.append(Step(m, "answer"))
                    break
                steps.append(Step(m, "reject"))
            out.append(steps)
        return out
