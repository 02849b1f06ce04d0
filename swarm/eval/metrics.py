"""Every metric of the evaluation, computed from per-query `Record`s.

- accuracy: share of queries whose counted answer is correct (a failed query counts as wrong);
- cost, the paper's: the answering agent's normalised cost (rejections free);
- measured cost: tokens and model-seconds of every agent call a method made for the query
  (rejections, forced answers and verifications included); `measured_cost` puts model-seconds on
  the paper's scale: a query's model-seconds / `reference_s` x `reference_cost`, where the
  reference is what the largest agent spends answering alone (so Largest scores about its
  normalised cost under both definitions);
  (caveat: a transformers agent reports, for each query, the wall time of the whole micro-batch the
  query ran in, so model-seconds count a batch once per query in it and favour small batches);
- compute cost: tokens x FLOPs per token of the agent, summed over every call, on the same
  scale (`compute_cost`, reference: the largest agent answering alone): the measured cost that
  neither batching nor a busy machine distorts;
- utility = accuracy - alpha x cost, under both cost definitions (measured: seconds and compute);
- latency p50/p95, end to end and by hop count; calls per query;
- per-agent answer rate (answered / decided, among queries that reached the agent) and the
  routing distribution (share of queries answered by each agent);
- easy/hard split: easy = some agent of the cheaper half of the ladder answers it correctly
  when forced (from the per-agent correctness `labels`);
- self-assessment F1: an agent's answer/reject decision against whether its own forced answer
  is correct (positive = "can answer"), per agent and pooled;
- share of Oracle utility: a method's utility / the Oracle's.

`labels` maps a query id to {agent: correct when forced to answer}.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from swarm.eval.records import Record

Labels = Mapping[str, Mapping[str, bool]]


def accuracy(records: Sequence[Record]) -> float:
    return _mean([r.correct for r in records])


def paper_cost(records: Sequence[Record]) -> float:
    return _mean([r.cost for r in records])


def mean_tokens(records: Sequence[Record]) -> float:
    return _mean([r.tokens for r in records])


def mean_model_seconds(records: Sequence[Record]) -> float:
    return _mean([r.model_seconds for r in records])


def measured_cost(records: Sequence[Record], reference_s: float, reference_cost: float = 0.9) -> float:
    """Mean model-seconds per query on the paper's cost scale (see the module docstring)."""
    if reference_s <= 0:
        raise ValueError(f"reference_s must be positive, got {reference_s}")
    return mean_model_seconds(records) / reference_s * reference_cost


def mean_flops(records: Sequence[Record], flops_per_token: Mapping[str, float]) -> float:
    return _mean([sum(st.tokens * flops_per_token.get(st.agent, 0.0) for st in r.steps) for r in records])


def compute_cost(records: Sequence[Record], flops_per_token: Mapping[str, float], reference_flops: float, reference_cost: float = 0.9) -> float:
    """Mean FLOPs per query (every call) on the paper's cost scale."""
    if reference_flops <= 0:
        raise ValueError(f"reference_flops must be positive, got {reference_flops}")
    return mean_flops(records, flops_per_token) / reference_flops * reference_cost


def utility(records: Sequence[Record], alpha: float, cost: float | None = None) -> float:
    """accuracy - alpha x cost; the paper's cost unless `cost` (e.g. the measured one) is given."""
    return accuracy(records) - alpha * (paper_cost(records) if cost is None else cost)


def paired_gap(mine: Sequence[Record], theirs: Sequence[Record], alpha: float, resamples: int = 2000, seed: int = 0) -> dict:
    """Utility of `mine` minus `theirs` on the same queries, with a 95% paired bootstrap interval
    (queries resampled with replacement, seeded): is a gap larger than the test set's noise?"""
    import numpy as np

    a, b = {r.query_id: r for r in mine}, {r.query_id: r for r in theirs}
    if set(a) != set(b) or not a:
        raise ValueError("paired_gap needs two methods' records of the same queries")
    ids = sorted(a)
    d = np.array([(a[q].correct - alpha * a[q].cost) - (b[q].correct - alpha * b[q].cost) for q in ids], dtype=np.float64)
    means = d[np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    return {"gap": float(d.mean()), "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]}


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency(records: Sequence[Record]) -> dict:
    """p50/p95 end to end, overall and by hop count (hops -> {n, p50_s, p95_s})."""
    by_hops: dict[int, list[float]] = defaultdict(list)
    for r in records:
        by_hops[r.hops].append(r.latency_s)
    all_s = [r.latency_s for r in records]
    return {
        "p50_s": quantile(all_s, 0.5), "p95_s": quantile(all_s, 0.95),
        "by_hops": {h: {"n": len(v), "p50_s": quantile(v, 0.5), "p95_s": quantile(v, 0.95)} for h, v in sorted(by_hops.items())},
    }


def calls_per_query(records: Sequence[Record]) -> float:
    return _mean([r.calls for r in records])


def routing_distribution(records: Sequence[Record], agents: Sequence[str]) -> dict[str, float]:
    """Share of all queries answered by each agent ('' collects failed queries, when any)."""
    counts = Counter(r.agent for r in records)
    out = {a: counts.get(a, 0) / len(records) if records else 0.0 for a in agents}
    if counts.get(""):
        out[""] = counts[""] / len(records)
    return out


def answer_rates(records: Sequence[Record]) -> dict[str, float]:
    """Per agent: answered (freely or forced) / decided, over the queries that reached it."""
    answered: Counter[str] = Counter()
    decided: Counter[str] = Counter()
    for r in records:
        for agent, decision in _decisions(r).items():
            decided[agent] += 1
            answered[agent] += decision in ("answer", "forced")
    return {a: answered[a] / decided[a] for a in decided}


def easy_ids(labels: Labels, agents_by_cost: Sequence[str]) -> set[str]:
    """Queries that some agent of the cheaper half of the ladder answers correctly."""
    small = agents_by_cost[: max(1, len(agents_by_cost) // 2)]
    return {q for q, row in labels.items() if any(row.get(a, False) for a in small)}


def easy_hard(records: Sequence[Record], alpha: float, labels: Labels, agents_by_cost: Sequence[str]) -> dict:
    easy = easy_ids(labels, agents_by_cost)
    out = {}
    for name, part in (("easy", [r for r in records if r.query_id in easy]), ("hard", [r for r in records if r.query_id not in easy])):
        out[name] = {"n": len(part), "accuracy": accuracy(part), "cost": paper_cost(part), "utility": utility(part, alpha),
                     "model_seconds": mean_model_seconds(part)}
    return out


def self_assessment_f1(records: Sequence[Record], labels: Labels) -> dict:
    """F1 of 'answer' as a prediction of 'my forced answer is correct', for each agent's free
    decisions (forced answers are no decision and are left out); per agent and pooled."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    n: Counter[str] = Counter()
    for r in records:
        row = labels.get(r.query_id)
        if row is None:
            continue
        for step in r.steps:
            if step.decision not in ("answer", "reject") or step.agent not in row:
                continue
            said, can = step.decision == "answer", row[step.agent]
            n[step.agent] += 1
            tp[step.agent] += said and can
            fp[step.agent] += said and not can
            fn[step.agent] += (not said) and can
    per = {a: {"n": n[a], "f1": _f1(tp[a], fp[a], fn[a])} for a in sorted(n)}
    return {"pooled": _f1(sum(tp.values()), sum(fp.values()), sum(fn.values())), "agents": per}


def oracle_share(method_utility: float, oracle_utility: float) -> float:
    return method_utility / oracle_utility if oracle_utility > 0 else float("nan")


def summarize(records: Sequence[Record], alpha: float, agents_by_cost: Sequence[str], labels: Labels | None = None,
              reference_s: float | None = None, reference_cost: float = 0.9, oracle_utility: float | None = None,
              flops_per_token: Mapping[str, float] | None = None, reference_flops: float | None = None) -> dict:
    """All metrics of one method at one alpha, as a JSON-ready dict."""
    out = {
        "n": len(records), "failed": sum(1 for r in records if r.error), "alpha": alpha,
        "accuracy": accuracy(records), "cost": paper_cost(records), "utility": utility(records, alpha),
        "tokens": mean_tokens(records), "model_seconds": mean_model_seconds(records),
        "calls": calls_per_query(records), "latency": latency(records),
        "routing": routing_distribution(records, agents_by_cost), "answer_rate": answer_rates(records),
    }
    if reference_s:
        mc = measured_cost(records, reference_s, reference_cost)
        out["measured_cost"], out["measured_utility"] = mc, utility(records, alpha, mc)
    if flops_per_token and reference_flops:
        cc = compute_cost(records, flops_per_token, reference_flops, reference_cost)
        out["flops"], out["compute_cost"], out["compute_utility"] = mean_flops(records, flops_per_token), cc, utility(records, alpha, cc)
    if labels is not None:
        out["easy_hard"] = easy_hard(records, alpha, labels, agents_by_cost)
        out["self_assessment"] = self_assessment_f1(records, labels)
    if oracle_utility is not None:
        out["oracle_share"] = oracle_share(out["utility"], oracle_utility)
    return out


def _decisions(r: Record) -> dict[str, str]:
    """Each agent's final decision on the query (a reject later overridden by a forced answer
    counts as the forced answer); failures to reach an agent are not decisions."""
    out: dict[str, str] = {}
    for s in r.steps:
        if s.decision in ("answer", "reject", "forced"):
            out[s.agent] = s.decision
    return out


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0
