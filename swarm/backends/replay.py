"""Replay backend: answers, correctness and competence read from a table instead of a model.

It stands in for a trained self-aware agent, deterministically: for a query with competence
p(x) it rejects exactly when p(x) <= (1 - alpha) ** gamma, the decision the paper's RL reward
makes optimal. Routing, fault and scale tests run on it with no model at all.

Table: JSON lines, one per query:
``{"id": "q1", "query": "What is 17 + 25?", "gold": "42", "agents": {"m1": {"answer": "42", "correct": true, "p": 0.9}}}``
One row per query (matched ignoring case and spacing): a second row for a query is refused with
both line numbers. The shipped arithmetic table is `write_table(synthesize_table(), path)`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.prompts import GAMMA, reject_reward
from swarm.replaytable import ReplayEntry, ReplayTable, load_table, normalise_query

__all__ = ["ReplayBackend", "ReplayEntry", "ReplayTable", "load_table", "synthesize_table", "write_table"]

UNKNOWN_ANSWER = "I cannot answer this question."


class ReplayBackend(Backend):
    def __init__(self, table: ReplayTable, model: str, gamma: float = GAMMA, latency_ms: float = 0.0, reject_latency_ms: float = 0.0) -> None:
        self.table, self.model, self.gamma = table, model, gamma
        self.latency_s, self.reject_latency_s = latency_ms / 1000, reject_latency_ms / 1000

    @classmethod
    def from_spec(cls, spec, agent_name: str, gamma: float = GAMMA) -> ReplayBackend:
        return cls(load_table(spec.table), spec.model or agent_name, gamma, spec.latency_ms, spec.reject_latency_ms)

    def threshold(self, alpha: float) -> float:
        return reject_reward(alpha, self.gamma)

    async def generate(self, request: GenerationRequest) -> Generation:
        start = time.perf_counter()
        entry = self.table.entry(request.query, self.model)
        competence = entry.p if entry else 0.0
        if request.allow_reject and competence <= self.threshold(request.alpha):
            text, delay = request.reject_phrase, self.reject_latency_s
        else:
            text, delay = (entry.answer if entry else UNKNOWN_ANSWER), self.latency_s
        if delay:
            await asyncio.sleep(delay)
        return Generation(text, len(request.query.split()), len(text.split()), time.perf_counter() - start)


def synthesize_table(n: int = 500, models: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5"), seed: int = 1) -> list[dict]:
    """A deterministic arithmetic replay table for a ladder of models whose competence rises with
    rank and falls with difficulty (1 to 5), so that routing has something to gain.

    Competence p = logistic(2 * (skill - difficulty) + 1) with skill = rank 1..K, and each model's
    recorded answer is right with probability p: a stand-in for sampling a real model.
    """
    import random

    rng = random.Random(seed)
    redraw = random.Random(-seed - 1)  # a query already in the table gets new operands from here, so `rng` (every other row) is as before
    makers = [
        lambda r: (r.randint(10, 99), "+", r.randint(10, 99)),
        lambda r: (r.randint(100, 999), "+", r.randint(100, 999)),
        lambda r: (r.randint(11, 99), "*", r.randint(3, 9)),
        lambda r: (r.randint(11, 99), "*", r.randint(11, 99)),
        lambda r: (r.randint(101, 999), "*", r.randint(11, 99)),
    ]
    rows = [_row("q0", 17, "+", 25, 1, models, rng)]
    seen = {normalise_query(rows[0]["query"])}
    for i in range(1, n):
        difficulty = 1 + i % 5
        a, op, b = makers[difficulty - 1](rng)
        for _ in range(10_000):
            if normalise_query(_query(a, op, b)) not in seen:
                break
            a, op, b = makers[difficulty - 1](redraw)
        else:
            raise ValueError(f"no new query of difficulty {difficulty} in 10,000 draws: {n} rows are too many")
        seen.add(normalise_query(_query(a, op, b)))
        rows.append(_row(f"q{i}", a, op, b, difficulty, models, rng))
    return rows


def write_table(rows: list[dict], path: str | Path) -> None:
    """Write a replay table (the shipped one: `write_table(synthesize_table(), "topologies/data/arith-replay.jsonl")`)."""
    Path(path).write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def _query(a: int, op: str, b: int) -> str:
    return f"What is {a} {op} {b}?"


def _row(qid: str, a: int, op: str, b: int, difficulty: int, models: tuple[str, ...], rng) -> dict:
    import math

    gold = a + b if op == "+" else a * b
    agents = {}
    for rank, model in enumerate(models, 1):
        skill = 1 + 4 * (rank - 1) / max(1, len(models) - 1)
        p = round(1 / (1 + math.exp(-(2 * (skill - difficulty) + 1))), 3)
        correct = rng.random() < p
        value = gold if correct else gold + rng.choice([-10, -2, -1, 1, 2, 10])
        agents[model] = {"answer": f"The answer is: {value}", "correct": correct, "p": p}
    return {"id": qid, "query": _query(a, op, b), "gold": str(gold), "difficulty": difficulty, "agents": agents}

