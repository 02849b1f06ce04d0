"""The evaluation's train/test items on the testbed.

- test: the first `per_cell` items of every (family, difficulty) cell of `held_out(0, 200)`, the
  set the quick ladder was evaluated on; in-domain families by default (`OOD_FAMILIES` for the
  out-of-domain experiment).
- train: the first `n` distinct items of `training_stream(seed=0)` over the in-domain families,
  excluding every question of `held_out(0, 200)` over all families, so no test question is ever
  a training question. Learned baselines fit on the agents' forced answers to these items only.
"""

from __future__ import annotations

from collections import Counter

from swarm.tasks.base import TaskItem
from swarm.tasks.testbed_families import FAMILIES, IN_DOMAIN_FAMILIES, held_out, training_stream

HELD_OUT_SEED, HELD_OUT_PER_CELL = 0, 200


def held_out_items(per_cell: int, families: tuple[str, ...] = IN_DOMAIN_FAMILIES) -> list[TaskItem]:
    if per_cell < 1:
        raise ValueError(f"per_cell must be at least 1, got {per_cell}")
    taken: Counter[tuple[str, int]] = Counter()
    out = []
    for item in held_out(HELD_OUT_SEED, HELD_OUT_PER_CELL, families):
        cell = (item.domain, item.difficulty)
        if taken[cell] < per_cell:
            taken[cell] += 1
            out.append(item)
    return out


def training_items(n: int, families: tuple[str, ...] = IN_DOMAIN_FAMILIES, seed: int = 0) -> list[TaskItem]:
    exclude = {i.prompt for i in held_out(HELD_OUT_SEED, HELD_OUT_PER_CELL, FAMILIES)}
    seen: set[str] = set()
    out = []
    for item in training_stream(seed, exclude, families):
        if item.prompt not in seen:
            seen.add(item.prompt)
            out.append(item)
            if len(out) == n:
                return out
    return out
