"""A replayed model's self-assessment, learned from its own outcomes only, and the swarm's decisions.

Each agent fits the project's probe (`swarm.assess.probe.fit_probe`: logistic regression, L2 by
out-of-fold AUROC, Platt-scaled on the out-of-fold scores) on an embedding of the query (the
all-MiniLM-L6-v2 vector, in place of a model's hidden states: one "layer" of 384 states) against
its own correctness on the training queries, and nothing else: no other model's outcomes. It then
decides as the testbed's probe agents do (`swarm.policies.ProbePolicy`, confirm none: there are no
token log-probabilities in a replay): it answers when its calibrated P(I know) - alpha * cost clears
the value curve the next agent advertises (`swarm.assess.curves`, backward induction along the
cascade, cheapest first; the dearest agent answers whatever reaches it). A query farther from its
training queries than 99% of them is one its probe cannot judge: it decides that query on its prior,
its accuracy on its own validation queries (``unfamiliar``: prior; passing such queries on sent
most of a held-out benchmark to the dearest model). A rejection costs no
model call: the probe reads the query's embedding, not the model.

With a region map (`swarm.assess.regions`, k-means of the training queries' embeddings, shared by
all agents) each agent advertises one curve per region and a query is judged against the next
agent's curve of its own region (`swarm.assess.curves.region_curves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from swarm.assess.curves import pointwise_best
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


def judged_p(probe: Probe, states: np.ndarray) -> np.ndarray:
    """The P an agent judges each query by (unfamiliar "prior"): its probe's, or, on a query its probe cannot
    judge, its prior (its accuracy on its own validation queries)."""
    return np.where(probe.familiar(states), probe.p_know(states), probe.accuracy)


@dataclass
class ProbeSwarm:
    """Agents cheapest first, each deciding with its own probe and the advertised curve (of the
    query's region; one region: the plain curves) of the agent it would pass the query to: the next
    one (hop "next", a launched swarm's cascade), or, of every dearer agent, the one that advertises
    the most for this query's region and alpha (hop "best": dominated agents are skipped)."""

    policies: dict[str, ProbePolicy]  # model -> its policy
    costs: dict[str, float]  # model -> cost on the paper's scale
    curves: dict[str, list[tuple[float, ...]]]  # model -> the value curve it advertises, per region
    hop: str = "next"

    @classmethod
    def of(cls, probes: Mapping[str, Probe], costs: Mapping[str, float], bar: str = "curve", unfamiliar: str = "prior",
           regions: np.ndarray | None = None, k: int = 1, hop: str = "next") -> ProbeSwarm:
        """`regions`: the region of each validation (training) query, in the probes' order (None: one region)."""
        if hop not in ("next", "best"):
            raise ValueError(f"hop must be 'next' or 'best', not {hop!r}")
        order = sorted(probes, key=lambda m: (costs[m], m))
        policies = {m: ProbePolicy.from_probe(probes[m], bar=bar, unfamiliar=unfamiliar) for m in order}
        curves: dict[str, list[tuple[float, ...]]] = {}
        for i in range(len(order) - 1, -1, -1):  # each agent's curves from those after it: what the membership gossips
            m, later = order[i], order[i + 1:]
            successor = None
            if later:  # what passing on is worth, per region: the next agent's curve, or the best of all dearer ones
                heirs = later[:1] if hop == "next" else later
                successor = [pointwise_best([curves[h][r] for h in heirs]) for r in range(len(curves[later[0]]))]
            if regions is None:
                curves[m] = [policies[m].curve(costs[m], tuple(successor[0]) if successor else None)]
            else:
                curves[m] = policies[m].region_curves(costs[m], successor, regions, k)
        return cls(policies, {m: costs[m] for m in order}, curves, hop)

    @property
    def order(self) -> list[str]:
        return list(self.policies)

    def _heir(self, i: int, region: int, alpha: float) -> int:
        """Who agent `i` passes a query on to."""
        if self.hop == "next":
            return i + 1
        from swarm.assess.curves import at

        order = self.order
        # a tie goes to the dearer agent: one that advertises no more than a dearer one would pass the query on to it anyway
        return max(range(i + 1, len(order)), key=lambda j: (at(self.curves[order[j]][region], alpha), j))

    def route(self, ids: Sequence[str], x: np.ndarray, alpha: float, regions: np.ndarray | None = None) -> list[list[Step]]:
        """Per query, the steps of its walk: rejections, then the answer (the dearest agent's is
        forced). `regions`: each query's region (None: region 0)."""
        order = self.order
        states = np.asarray(x, dtype=np.float32)[:, None, :]
        p = {m: self.policies[m].probe.p_know(states) for m in order[:-1]}
        familiar = {m: self.policies[m].probe.familiar(states) for m in order[:-1]}
        out = []
        for k, qid in enumerate(ids):
            region = 0 if regions is None else int(regions[k])
            steps, i = [], 0
            while i < len(order) - 1:
                m, heir = order[i], self._heir(i, region, alpha)
                policy = self.policies[m]
                known = policy.unfamiliar == "trust" or bool(familiar[m][k])
                ask = Ask(qid, "", alpha, cost=self.costs[m], pass_curve=self.curves[order[heir]][region])
                if policy.answers(policy.p_max, ask) and policy.worth_generating(float(p[m][k]), known, ask):
                    steps.append(Step(m, "answer"))
                    break
                steps.append(Step(m, "reject"))
                i = heir
            else:
                steps.append(Step(order[-1], "forced"))
            out.append(steps)
        return out
