"""Replay backend: answers, correctness and competence read from a table instead of a model.

It stands in for a trained self-aware agent, deterministically: for a query with competence
p(x) it rejects exactly when p(x) <= (1 - alpha) ** gamma, the decision the paper's RL reward
makes optimal. Routing, fault and scale tests run on it with no model at all.

Table: JSON lines, one per query:
``{"id": "q1", "query": "What is 17 + 25?", "gold": "42", "agents": {"m1": {"answer": "42", "correct": true, "p": 0.9}}}``
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from swarm.backends.base import Backend, Generation, GenerationRequest
from swarm.prompts import GAMMA, reject_reward

UNKNOWN_ANSWER = "I cannot answer this question."


@dataclass(frozen=True)
class ReplayEntry:
    answer: str
    correct: bool
    p: float


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


class ReplayTable:
    """Rows of a replay file, indexed by normalised query text."""

    def __init__(self, rows: list[dict], source: str = "<memory>") -> None:
        self.source = source
        self.rows = rows
        self._by_text: dict[str, dict] = {}
        for number, row in enumerate(rows, 1):
            if not isinstance(row, dict) or not isinstance(row.get("query"), str):
                raise ValueError(f"{source}:{number}: each row needs a string 'query'")
            self._by_text[_normalise(row["query"])] = row

    @classmethod
    def load(cls, path: str | Path) -> ReplayTable:
        path = Path(path)
        rows = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        return cls(rows, str(path))

    def entry(self, query: str, model: str) -> ReplayEntry | None:
        row = self._by_text.get(_normalise(query))
        if row is None:
            return None
        cell = row.get("agents", {}).get(model)
        if cell is None:
            return None
        return ReplayEntry(answer=str(cell.get("answer", "")), correct=bool(cell.get("correct", False)), p=float(cell.get("p", 0.0)))

    def gold(self, query: str) -> str | None:
        row = self._by_text.get(_normalise(query))
        return None if row is None else row.get("gold")

    def queries(self) -> list[str]:
        return [row["query"] for row in self.rows]


class ReplayBackend(Backend):
    def __init__(self, table: ReplayTable, model: str, gamma: float = GAMMA, latency_ms: float = 0.0, reject_latency_ms: float = 0.0) -> None:
        self.table, self.model, self.gamma = table, model, gamma
        self.latency_s, self.reject_latency_s = latency_ms / 1000, reject_latency_ms / 1000

    @classmethod
    def from_spec(cls, spec, agent_name: str, gamma: float = GAMMA) -> ReplayBackend:
        return cls(ReplayTable.load(spec.table), spec.model or agent_name, gamma, spec.latency_ms, spec.reject_latency_ms)

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
    makers = [
        lambda: (rng.randint(10, 99), "+", rng.randint(10, 99)),
        lambda: (rng.randint(100, 999), "+", rng.randint(100, 999)),
        lambda: (rng.randint(11, 99), "*", rng.randint(3, 9)),
        lambda: (rng.randint(11, 99), "*", rng.randint(11, 99)),
        lambda: (rng.randint(101, 999), "*", rng.randint(11, 99)),
    ]
    rows = [_row("q0", 17, "+", 25, 1, models, rng)]
    for i in range(1, n):
        difficulty = 1 + i % 5
        a, op, b = makers[difficulty - 1]()
        rows.append(_row(f"q{i}", a, op, b, difficulty, models, rng))
    return rows


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
    return {"id": qid, "query": f"What is {a} {op} {b}?", "gold": str(gold), "difficulty": difficulty, "agents": agents}

