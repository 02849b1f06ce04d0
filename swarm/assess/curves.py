"""Value curves: answer bars that know the pool, with no central router.

V_i(alpha) is what a query handed to agent i is worth, in utility (correct - alpha * cost of the
agent that answers), on a fixed grid of alphas. Agent i computes it from its own validation data
(its out-of-fold P(I know) and whether its greedy reply was right) and the curve its successor
advertises (backward induction along the cascade):

    answer x  iff  P_i(x) - alpha * c_i >= V_next(alpha)
    V_i(alpha) = mean over validation x of (correct_i(x) - alpha * c_i if it answers, else V_next(alpha))

and the last agent (no successor) answers everything: V = accuracy - alpha * c. Agents share only
their cost and their curve (in their membership entry); nobody sees another agent's model or data.
"""

from __future__ import annotations

import numpy as np

GRID = tuple(round(i * 0.05, 2) for i in range(21))  # the alphas a curve is given at


def at(curve: list[float] | tuple[float, ...], alpha: float) -> float:
    """The curve's value at `alpha` (linear between grid points)."""
    return float(np.interp(alpha, GRID, curve))


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


def answers(p_know: float, alpha: float, cost: float, successor: list[float] | None, bar: float) -> bool:
    """The decision: beat the value of passing on (the successor's curve), or, when the successor
    advertises none, the fixed bar `bar` (the paper's (1 - alpha) ** gamma)."""
    if successor is None:
        return p_know >= bar
    return p_know - alpha * cost >= at(successor, alpha)
