"""Value curves: answer bars that know the pool, with no central router.

V_i(alpha) is what a query handed to agent i is worth, in utility (correct - alpha * cost of the
agent that answers), on a fixed grid of alphas. Agent i computes it from its own validation data
(its out-of-fold P(I know) and whether its greedy reply was right) and the curve its successor
advertises (backward induction along the cascade):

    answer x  iff  P_i(x) - alpha * c_i >= V_next(alpha)
    V_i(alpha) = mean over validation x of (correct_i(x) - alpha * c_i if it answers, else V_next(alpha))

and the last agent (no successor) answers everything: V = accuracy - alpha * c. Agents share only
their cost and their curve (in their membership entry); nobody sees another agent's model or data.

One curve averages over every query, so it says what passing on is worth on an average query,
while the queries an agent is unsure of are those its successors find hard too: with many agents
the cheap ones then pass on far too much (on RouterBench's 11 models at alpha 0.5: utility 0.545,
against 0.62 with regions). Regions (`region_curves`) condition the curve on a coarse, shared
property of the query, its region (e.g. a cluster of its embedding under a map every agent uses):
one curve per region, each from the agent's validation queries in that region and its successor's
curve of the same region; a query is judged against its own region's curve.
"""

from __future__ import annotations

import numpy as np

GRID = tuple(round(i * 0.05, 2) for i in range(21))  # the alphas a curve is given at


def at(curve: list[float] | tuple[float, ...], alpha: float) -> float:
    """The curve's value at `alpha` (linear between grid points)."""
    return float(np.interp(alpha, GRID, curve))


def pointwise_best(curves) -> list[float]:
    """What passing a query on is worth when it may go to any of the agents advertising `curves` (one or
    more, on one grid): at each alpha, the most any of them is worth (the next hop "best")."""
    return [float(v) for v in np.max(np.asarray(curves, dtype=np.float64), axis=0)]


def value_curve(p_know: np.ndarray, correct: np.ndarray, cost: float, successor: list[float] | None) -> list[float]:
    """This agent's V on GRID, given its validation scores and outcomes and its successor's curve
    (None: nobody after it, it answers everything)."""
    c = np.asarray(correct, dtype=np.float64)
    p = np.asarray(p_know, dtype=np.float64)
    out = []
    for j, alpha in enumerate(GRID):
        if successor is None:
            out.append(float(c.mean()) - alpha * cost)
            continue
        v_pass = successor[j]
        answer = p - alpha * cost >= v_pass
        out.append(float(np.where(answer, c - alpha * cost, v_pass).mean()))
    return [round(v, 5) for v in out]


MIN_REGION = 30  # validation queries a region needs for a curve of its own; fewer: all of them are used


def region_curves(p_know: np.ndarray, correct: np.ndarray, cost: float, successor: list[list[float]] | None,
                  regions: np.ndarray, k: int) -> list[list[float]]:
    """This agent's curve in each of the regions 0..k-1, given the region of each validation query
    and its successor's curve per region (None: nobody after it). A region with fewer than
    MIN_REGION validation queries is valued on all of them (against the successor's curve of that
    region), so a rare region neither gets a curve from a handful of queries nor none."""
    p, c, r = np.asarray(p_know, dtype=np.float64), np.asarray(correct, dtype=np.float64), np.asarray(regions)
    if len(r) != len(p):
        raise ValueError(f"{len(r)} regions for {len(p)} validation queries")
    if successor is not None and len(successor) != k:
        raise ValueError(f"successor advertises {len(successor)} regions, expected {k}")
    out = []
    for region in range(k):
        mask = r == region
        if mask.sum() < MIN_REGION:
            mask = np.ones(len(p), dtype=bool)
        out.append(value_curve(p[mask], c[mask], cost, None if successor is None else list(successor[region])))
    return out


def answers(p_know: float, alpha: float, cost: float, successor: list[float] | None, bar: float) -> bool:
    """The decision: beat the value of passing on (the successor's curve), or, when the successor
    advertises none, the fixed bar `bar` (the paper's (1 - alpha) ** gamma)."""
    return p_know >= answer_bar(alpha, cost, successor, bar)


def answer_bar(alpha: float, cost: float, successor: list[float] | None, bar: float) -> float:
    """The least P(I know) that `answers` accepts (speculation's uncertain band starts from it)."""
    if successor is None:
        return bar
    return at(successor, alpha) + alpha * cost
