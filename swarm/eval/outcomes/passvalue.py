"""The value of passing a query on, learned by each agent from what came back to it (replayed outcomes).

A value curve (`swarm.assess.curves`) tells an agent what passing a query on is worth on an average
query (of a region), while the queries an agent is unsure of are the hard ones downstream too.
Here each agent learns that value per query from its own history instead: for each training query
it passed on, the reply that came back names the agent that answered, that agent's cost and its
reported P(I know); the agent regresses that answerer's P - alpha * cost on the query's embedding
and its own P (ridge, its L2 chosen by leave-one-out: sklearn's RidgeCV). It answers a query when
its own P - alpha * cost is at least the learned value of passing it on to the next agent in price.
(One learned value per dearer peer, passing to the best, Q-routing after Boyan and Littman 1994,
was tried: no better on RouterBench, 55 regressions per alpha for 11 agents, and a peer that only
passes queries on looks as good as the one it passes them to, so it was left out.)

Nothing but the agent's own probe and what came back to it is used: no other agent's probe, data
or outcomes. In the replay that history is simulated backwards along the cascade: each agent's
training queries are routed from the peer onward on the peers' out-of-fold P (their self-assessment
of queries they were not trained on), as the peers would have decided them. A query farther from
the agent's training queries than 99% of them is one its probe cannot judge: its P is then the
agent's accuracy on its own validation queries (its prior), as in `swarm.eval.outcomes.selfassess`. A rejection costs no model call here either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from swarm.assess.probe import Probe
from swarm.eval.outcomes.selfassess import judged_p
from swarm.eval.records import Step

RIDGE_L2 = tuple(float(v) for v in np.logspace(0, 5, 11))  # RidgeCV's candidates, on standardised features


def features(x: np.ndarray, p_own: np.ndarray) -> np.ndarray:
    """What an agent learns the value of passing on from: the query's embedding and its own P (and P^2)."""
    p = np.asarray(p_own, dtype=np.float64)[:, None]
    return np.hstack([np.asarray(x, dtype=np.float64), p, p * p])


def _regressor():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_L2))


@dataclass
class LearnedPassSwarm:
    """Agents cheapest first; each one's learned value of passing a query on to the next, per alpha."""

    probes: dict[str, Probe]  # model -> its probe, cheapest first
    costs: dict[str, float]  # model -> cost on the paper's scale
    values: dict[float, dict[int, object]]  # alpha -> agent index -> its fitted regressor
    unfamiliar: str = "prior"  # a query an agent's probe cannot judge: "pass" it on, or decide on its "prior" (its accuracy)

    @classmethod
    def fit(cls, probes: Mapping[str, Probe], costs: Mapping[str, float], x_train: np.ndarray, alphas: Sequence[float]) -> LearnedPassSwarm:
        """Learn every agent's values from its simulated history on the training queries `x_train`
        (the probes' own training queries, in their order: their out-of-fold P is what the peers report)."""
        order = sorted(probes, key=lambda m: (costs[m], m))
        p_val = np.array([np.asarray(probes[m].val_p, dtype=np.float64) for m in order]).T
        if len(p_val) != len(x_train):
            raise ValueError(f"{len(x_train)} training queries for probes validated on {len(p_val)}")
        swarm = cls({m: probes[m] for m in order}, {m: costs[m] for m in order}, {})
        for a in alphas:
            swarm.values[a] = {}
            for i in range(len(order) - 2, -1, -1):  # backwards: what comes back from i + 1 follows its own learned decisions
                down = swarm._walk(p_val, x_train, a, np.full(len(x_train), i + 1))[0]
                came_back = p_val[np.arange(len(down)), down] - a * swarm._c[down]
                swarm.values[a][i] = _regressor().fit(features(x_train, p_val[:, i]), came_back)
        return swarm

    @property
    def order(self) -> list[str]:
        return list(self.probes)

    @property
    def _c(self) -> np.ndarray:
        return np.array([self.costs[m] for m in self.order])

    def _walk(self, p: np.ndarray, x: np.ndarray, alpha: float, start: np.ndarray, familiar: np.ndarray | None = None):
        """Each query's answering agent (index) and the agents it visited, starting at `start`.
        `familiar`: (n, agents) whether each agent trusts its P on each query (None: every one, as
        for the training queries the agents were trained on)."""
        n, last, c = len(p), len(self.order) - 1, self._c
        at, answered = start.copy(), np.full(n, -1)
        visited: list[list[int]] = [[] for _ in range(n)]
        familiar = np.ones((n, last + 1), dtype=bool) if familiar is None else familiar
        for i in range(int(start.min()) if n else 0, last + 1):  # agents in price order: a query only moves to dearer ones
            here = np.flatnonzero((at == i) & (answered < 0))
            if not len(here):
                continue
            for k in here:
                visited[k].append(i)
            if i == last:
                answered[here] = i
                continue
            passing = self.values[alpha][i].predict(features(x[here], p[here, i]))
            answer = (p[here, i] - alpha * c[i] >= passing) & familiar[here, i]
            answered[here[answer]] = i
            at[here[~answer]] = i + 1
        return answered, visited

    def route(self, ids: Sequence[str], x: np.ndarray, alpha: float) -> list[list[Step]]:
        """Per query, the steps of its walk from the cheapest agent: rejections, then the answer
        (the dearest agent's is forced). `alpha` must be one the swarm was fitted at."""
        if alpha not in self.values:
            raise ValueError(f"no values learned at alpha {alpha:g} (learned at {', '.join(f'{a:g}' for a in self.values)})")
        order = self.order
        states = np.asarray(x, dtype=np.float32)[:, None, :]
        if self.unfamiliar == "prior":  # a query an agent's probe cannot judge: its P is the agent's accuracy
            p, familiar = np.array([judged_p(self.probes[m], states) for m in order], dtype=np.float64).T, None
        else:
            p = np.array([self.probes[m].p_know(states) for m in order], dtype=np.float64).T
            familiar = np.array([self.probes[m].familiar(states) for m in order]).T
        answered, visited = self._walk(p, np.asarray(x), alpha, np.zeros(len(ids), dtype=int), familiar)
        out = []
        for k in range(len(ids)):
            last = "forced" if answered[k] == len(order) - 1 else "answer"
            out.append([Step(order[i], "reject") for i in visited[k][:-1]] + [Step(order[answered[k]], last)])
        return out
