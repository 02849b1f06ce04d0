"""Routers that need no training: Smallest, Largest, Random, and the Oracle (the cheapest agent
whose forced answer is correct, from every agent's forced answers on the same items; the
cheapest agent when none is)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from swarm.tasks.base import TaskItem


class Smallest:
    def choose(self, items: Sequence[TaskItem], alpha: float, agents: dict[str, float]) -> list[str]:
        return [next(iter(agents))] * len(items)


class Largest:
    def choose(self, items, alpha, agents):
        return [list(agents)[-1]] * len(items)


class Random:
    """Uniform over agents, seeded per item so that a resumed run chooses the same."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def choose(self, items, alpha, agents):
        names = list(agents)
        return [random.Random(f"{self.seed}/{i.id}").choice(names) for i in items]


class Oracle:
    def __init__(self, labels: Mapping[str, Mapping[str, bool]]) -> None:
        self.labels = labels

    def choose(self, items, alpha, agents):
        names = list(agents)
        out = []
        for item in items:
            row = self.labels.get(item.id)
            if row is None:
                raise KeyError(f"the oracle has no forced answers for item {item.id}: collect labels on the test items first")
            out.append(next((a for a in names if row.get(a)), names[0]))
        return out
