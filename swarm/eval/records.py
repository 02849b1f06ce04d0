"""Per-query outcome records and their resumable JSONL store.

A `Record` is what one method did with one query: who answered, whether it was right, what it
cost (the answering agent's normalised cost, and the measured tokens and model-seconds of every
agent call the method made, rejections and verifications included), how long it took and the
trace of agent decisions. A `RecordStore` appends records to one JSONL file per (method, alpha);
a rerun reads the file and skips the query ids already there, so an interrupted run resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Step:
    """One agent call inside a query's handling: the agent, its decision and its cost."""

    agent: str
    decision: str  # answer, reject, forced, verify, unreachable, refused, error
    seconds: float = 0.0
    tokens: int = 0


@dataclass(frozen=True)
class Record:
    query_id: str  # the TaskItem id
    method: str
    alpha: float
    domain: str
    difficulty: int
    agent: str  # the agent whose answer counts ("" when the query failed)
    cost: float  # that agent's normalised cost (0 when the query failed)
    correct: bool
    latency_s: float = 0.0
    hops: int = 0  # forwards between agents inside the swarm (0 for a direct call)
    calls: int = 1  # agent calls the method made for this query
    tokens: int = 0  # measured: every agent call, rejections and verifications included
    model_seconds: float = 0.0
    steps: list[Step] = field(default_factory=list)
    answer: str = ""
    error: str = ""  # the QueryError code when no answer came back

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Record:
        return cls(**{**data, "steps": [Step(**s) for s in data.get("steps", [])]})


class RecordStore:
    """Records of one (method, alpha) run in `path` (JSONL, appended as results arrive)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: dict[str, Record] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    r = Record.from_json(json.loads(line))
                    self.records[r.query_id] = r

    def done(self, query_id: str) -> bool:
        return query_id in self.records

    def add(self, records: list[Record]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for r in records:
                f.write(json.dumps(r.to_json()) + "\n")
                self.records[r.query_id] = r

    def get(self, ids: list[str]) -> list[Record]:
        return [self.records[i] for i in ids if i in self.records]
