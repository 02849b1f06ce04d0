"""A seeded test split of an outcome matrix, stratified by domain (the benchmark).

Each domain gets a share of the `n` test queries proportional to its size (largest remainders,
ties to the domain that sorts first); within a domain the queries, in order of id, are shuffled by a generator
seeded from (domain, seed), as the task loaders seed theirs, and the first ones are the test set.
The same rows, `n` and seed give the same split on any machine.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from swarm.eval.outcomes.matrix import OutcomeRow


def quota_by_domain(sizes: dict[str, int], n: int) -> dict[str, int]:
    """How many of `n` test queries each domain of `sizes` gives (proportional, largest remainders)."""
    total = sum(sizes.values())
    exact = {d: n * s / total for d, s in sizes.items()}
    quota = {d: int(x) for d, x in exact.items()}
    for d in sorted(sizes, key=lambda d: (-(exact[d] - quota[d]), d))[: n - sum(quota.values())]:
        quota[d] += 1
    return quota


def stratified_split(rows: Sequence[OutcomeRow], n_test: int, seed: int = 0) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    """(train, test): `n_test` rows stratified by domain, the rest train; both in the rows' order."""
    if not 0 < n_test < len(rows):
        raise ValueError(f"the test split must hold 1 to {len(rows) - 1} of the {len(rows)} queries, not {n_test}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row.domain].append(i)
    quota = quota_by_domain({d: len(ix) for d, ix in groups.items()}, n_test)
    test: set[int] = set()
    for domain in sorted(groups):
        members = sorted(groups[domain], key=lambda i: rows[i].id)  # the split does not depend on the rows' order
        random.Random(f"outcomes|{domain}|{seed}").shuffle(members)
        test.update(members[: quota[domain]])
    return [r for i, r in enumerate(rows) if i not in test], [r for i, r in enumerate(rows) if i in test]
