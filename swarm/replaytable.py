"""Replay tables: per query, each model's answer, correctness and competence, read from JSON lines.

The replay backend (`swarm.backends.replay`) answers from one; a topology's validation reads it
first, so a broken table fails with the topology's file and line, before any agent starts.
One row per query (matched ignoring case and spacing): a second row for a query is refused with
both line numbers.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from swarm.jsonlines import read_json_lines


def normalise_query(text: str) -> str:
    """The key a query is matched by: case and spacing ignored."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class ReplayEntry:
    answer: str
    correct: bool
    p: float


class ReplayTable:
    """Rows of a replay file, indexed by normalised query text."""

    def __init__(self, rows: list[dict], source: str = "<memory>", lines: list[int] | None = None) -> None:
        """`lines`: each row's line in `source` (default: its position), for the errors."""
        self.source = source
        self.rows = rows
        lines = lines or list(range(1, len(rows) + 1))
        self._by_text: dict[str, dict] = {}
        first_line: dict[str, int] = {}
        for number, row in zip(lines, rows, strict=True):
            if not isinstance(row, dict) or not isinstance(row.get("query"), str):
                raise ValueError(f"{source}:{number}: each row needs a string 'query'")
            problem = _cells_problem(row.get("agents", {}))
            if problem:
                raise ValueError(f"{source}:{number}: {problem}")
            key = normalise_query(row["query"])
            if key in first_line:  # two rows for one query: which one answers would be an accident of order
                shown = row["query"] if len(row["query"]) <= 80 else row["query"][:77] + "..."
                raise ValueError(f"{source}:{number}: query {shown!r} already has a row at line {first_line[key]} "
                                 "(queries are matched ignoring case and spacing; keep one row per query)")
            first_line[key] = number
            self._by_text[key] = row

    @classmethod
    def load(cls, path: str | Path) -> ReplayTable:
        path = Path(path)
        numbered = read_json_lines(path, lambda number, problem: ValueError(f"{path}:{number}: {problem}"))
        rows, lines = [row for _, row in numbered], [number for number, _ in numbered]
        return cls(rows, str(path), lines)

    def entry(self, query: str, model: str) -> ReplayEntry | None:
        row = self._by_text.get(normalise_query(query))
        if row is None:
            return None
        cell = row.get("agents", {}).get(model)
        if cell is None:
            return None
        return ReplayEntry(answer=str(cell.get("answer", "")), correct=bool(cell.get("correct", False)), p=float(cell.get("p", 0.0)))

    def gold(self, query: str) -> str | None:
        row = self._by_text.get(normalise_query(query))
        return None if row is None else row.get("gold")

    def queries(self) -> list[str]:
        return [row["query"] for row in self.rows]


def _cells_problem(agents: object) -> str | None:
    """What is wrong with a row's `agents` ({model: {"answer": str, "correct": bool, "p": 0..1}}), if anything."""
    if not isinstance(agents, dict):
        return f"'agents' must map each model to its cell, got {type(agents).__name__}"
    for model, cell in agents.items():
        shown = repr(model[:40])
        if not isinstance(cell, dict):
            return f"agents[{shown}] must be a map of answer, correct and p, got {type(cell).__name__}"
        if not isinstance(cell.get("answer", ""), str):
            return f"agents[{shown}].answer must be text"
        if not isinstance(cell.get("correct", False), bool):
            return f"agents[{shown}].correct must be true or false"
        p = cell.get("p", 0.0)
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
            return f"agents[{shown}].p must be a number from 0 to 1"
    return None


def load_table(path: str | Path) -> ReplayTable:
    """`ReplayTable.load`, read once per file version: a topology's agents usually share one table,
    and the topology's validation reads it too (so a broken table fails there, with the file)."""
    st = os.stat(path)
    return _load_once(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=16)
def _load_once(path: str, mtime_ns: int, size: int) -> ReplayTable:
    return ReplayTable.load(path)
