"""The generic outcome-matrix format: JSON lines, one query a line, each model's outcome on it.

    {"id": "q1", "query": "What is 17 + 25?", "domain": "arithmetic", "gold": "42",
     "models": {"small": {"correct": 0, "answer": "41", "cost": 0.0001},
                "large": {"correct": 1, "answer": "42", "cost": 0.003}}}

- ``id``: unique in the file; ``query``: the text a model was given, unique once case and spacing
  are ignored (the key a replay table matches queries by); ``domain``: the benchmark or subject,
  what splits are stratified by and out-of-domain experiments hold out; ``gold``: optional.
- ``models``: the models run on this query (a model may be absent from some queries). Per model:
  ``correct``, a number in [0, 1]: 0 or 1 for one graded answer, the share of correct samples
  (the paper's competence p(x)) when several were drawn; ``answer``: the text it answered (one
  sample); ``cost``: what the call cost, in dollars (>= 0).

`outcomes_json_schema()` is the format's JSON Schema (`swarm outcomes schema` prints it). Reading
is bounded: at most `MAX_FILE_BYTES`, JSON only (nothing is ever unpickled), and a broken line is
one `OutcomesError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from swarm.errors import OutcomesError
from swarm.jsonlines import json_lines
from swarm.replaytable import normalise_query
from swarm.yamlfile import validate

MAX_FILE_BYTES = 1 << 30  # RouterBench's full 0-shot matrix is a few hundred MB
_STRICT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelOutcome(BaseModel):
    """One model's outcome on one query."""

    model_config = _STRICT
    correct: float = Field(ge=0, le=1, description="1 or 0 for one graded answer; the share of correct samples when several")
    answer: str = Field("", description="the text the model answered (one sample)")
    cost: float = Field(ge=0, description="what the call cost, in dollars")


class OutcomeRow(BaseModel):
    """One query and each model's outcome on it: a line of an outcome matrix."""

    model_config = _STRICT
    id: str = Field(min_length=1, description="unique in the file")
    query: str = Field(min_length=1, description="the text the models were given; unique ignoring case and spacing")
    domain: str = Field(min_length=1, description="benchmark or subject: what splits are stratified by")
    gold: str | None = Field(None, description="the reference answer, if known")
    models: dict[str, ModelOutcome] = Field(min_length=1, description="model name -> its outcome on this query")


def outcomes_json_schema() -> dict[str, Any]:
    return OutcomeRow.model_json_schema()


def check_unique(rows: Sequence[OutcomeRow], places: Sequence[tuple[str, int]]) -> None:
    """An OutcomesError at the second of two rows sharing an id, or a query (ignoring case and spacing)."""
    ids: dict[str, tuple[str, int]] = {}
    queries: dict[str, tuple[str, int]] = {}
    for row, (source, line) in zip(rows, places, strict=True):
        for seen, key, what in ((ids, row.id, f"id {row.id[:80]!r}"), (queries, normalise_query(row.query), "query")):
            if key in seen:
                first = seen[key]
                raise OutcomesError(source, "", f"{what} repeats {_place(first, source)}", line)
            seen[key] = (source, line)


def _place(where: tuple[str, int], source: str) -> str:
    return f"line {where[1]}" if where[0] == source else f"{where[0]}:{where[1]}"


def read_outcomes(path: str | Path) -> list[OutcomeRow]:
    """The rows of a generic outcome matrix (JSON lines; blank lines skipped)."""
    path = Path(path)
    rows, places = [], []
    source = str(path)
    with open_bounded(path) as fh:
        numbered = list(json_lines(fh, lambda number, problem: OutcomesError(source, "", problem, number), MAX_FILE_BYTES))
    for number, data in numbered:
        if not isinstance(data, dict):
            raise OutcomesError(source, "", f"expected a JSON object, got {type(data).__name__}", number)
        rows.append(validate(OutcomeRow, data, f"{source}:{number}", None, None, OutcomesError))
        places.append((source, number))
    if not rows:
        raise OutcomesError(str(path), "", "no rows")
    check_unique(rows, places)
    return rows


def open_bounded(path: Path):
    """`path` opened for reading bytes, after checking it is a file no larger than MAX_FILE_BYTES."""
    source = str(path)
    try:
        if not path.is_file():
            raise OutcomesError(source, "", "no such file" if not path.exists() else "not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise OutcomesError(source, "", f"the file is larger than {MAX_FILE_BYTES >> 20} MiB; is it the right file?")
        return path.open("rb")
    except OSError as exc:
        raise OutcomesError(source, "", f"cannot read: {exc.strerror or exc}") from None


def write_outcomes(rows: Iterable[OutcomeRow], path: str | Path) -> int:
    """Write rows as JSON lines (None fields left out); returns how many."""
    lines = [json.dumps(row.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for row in rows]
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def model_names(rows: Iterable[OutcomeRow]) -> list[str]:
    """Every model of the matrix, in order of first appearance."""
    return list(dict.fromkeys(name for row in rows for name in row.models))
