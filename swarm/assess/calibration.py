"""Measures of a self-assessment, each beside the trivial policies that could match it.

One convention everywhere (the paper's RL reward): a correct answer earns 1, a wrong one 0, a
rejection (1 - alpha) ** gamma; "correct" is the agent's greedy (forced) reply being right; F1
takes rejection as the positive class against the forced reply being wrong; AUROC and ECE are of
P(I know) against the forced reply being right.

Rows: the assessed policy, always-answer, always-reject, and the per-agent oracle (the best fixed
threshold on the true p(x): it answers exactly when p(x) clears the bar chosen with hindsight).
"""

from __future__ import annotations

import numpy as np

from swarm.prompts import GAMMA, reject_reward


def auroc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for 0/1 `labels` (ties count half); 0.5 when one class is absent."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return 0.5
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ece(p, labels, bins: int = 10) -> float:
    """Expected calibration error over `bins` equal-width bins of P."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any()) / len(p))


def decision_row(answer, correct, alpha: float, gamma: float = GAMMA) -> dict[str, float]:
    """Reward, answer rate and rejection P/R/F1 of one answer/reject decision per query."""
    a, c = np.asarray(answer, dtype=bool), np.asarray(correct, dtype=bool)
    n = max(len(a), 1)
    reward = float((np.where(a, c.astype(float), reject_reward(alpha, gamma))).sum() / n)
    rejected, wrong = ~a, ~c
    tp, fp, fn = int((rejected & wrong).sum()), int((rejected & c).sum()), int((~rejected & wrong).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"reward": round(reward, 4), "answer_rate": round(float(a.mean()) if len(a) else 0.0, 4), "f1": round(f1, 4)}


def per_agent_oracle(p_true, correct, alpha: float, gamma: float = GAMMA) -> dict[str, float]:
    """The best fixed threshold on the true p(x), chosen on these very queries (an upper bound)."""
    p = np.asarray(p_true, dtype=np.float64)
    best = None
    for t in [-1.0, *sorted(set(p.tolist())), 2.0]:
        row = decision_row(p >= t, correct, alpha, gamma)
        if best is None or row["reward"] > best["reward"]:
            best = {**row, "threshold": round(t, 4)}
    return best


def decision_table(policies: dict[str, np.ndarray], correct, alphas, p_true=None, gamma: float = GAMMA) -> dict[str, dict[str, dict]]:
    """Per alpha, the rows: each named policy's P (it answers when P >= (1 - alpha) ** gamma),
    always-answer, always-reject, and per-agent oracle (on `p_true` when given, else on the forced
    correctness)."""
    c = np.asarray(correct, dtype=bool)
    truth = np.asarray(p_true if p_true is not None else c.astype(float))
    out = {}
    for alpha in alphas:
        bar = reject_reward(alpha, gamma)
        out[f"{alpha:g}"] = {
            **{name: decision_row(np.asarray(p) >= bar, c, alpha, gamma) for name, p in policies.items()},
            "always-answer": decision_row(np.ones(len(c), bool), c, alpha, gamma),
            "always-reject": decision_row(np.zeros(len(c), bool), c, alpha, gamma),
            "per-agent oracle": per_agent_oracle(truth, c, alpha, gamma),
        }
    return out
