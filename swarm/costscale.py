"""The paper's cost scale: 0.1 for the cheapest model, 0.9 for the most expensive, linear in the
logarithm of the raw cost in between (FLOPs per token for the testbed ladder, mean dollars per
query for a replayed outcome matrix)."""

from __future__ import annotations

import math
from collections.abc import Mapping

LOW, HIGH = 0.1, 0.9


def log_cost_scale(raw: Mapping[str, float]) -> dict[str, float]:
    """Each name's raw cost (> 0) on the paper's scale, rounded to 3 decimals:
    0.1 + 0.8 * (log c - log c_min) / (log c_max - log c_min); all 0.1 when every cost is equal."""
    bad = [name for name, c in raw.items() if not (isinstance(c, int | float) and math.isfinite(c) and c > 0)]
    if bad:
        raise ValueError(f"a cost must be a positive number to be put on a log scale: {bad[0]!r} has {raw[bad[0]]!r}")
    if not raw:
        return {}
    logs = {name: math.log(c) for name, c in raw.items()}
    lo, hi = min(logs.values()), max(logs.values())
    return {name: round(LOW + (HIGH - LOW) * ((lc - lo) / (hi - lo) if hi > lo else 0.0), 3) for name, lc in logs.items()}
