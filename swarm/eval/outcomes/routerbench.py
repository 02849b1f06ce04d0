"""RouterBench's CSV outcome matrices (Hu et al. 2024), read into the generic format.

Columns: ``sample_id, prompt, eval_name``; then per model a 0/1 correctness column named by the
model, ``<model>|model_response`` and ``<model>|total_cost`` (dollars); an unnamed index column
and ``oracle_model_to_route_to`` are ignored. RouterBench writes a prompt and a response as a
Python list of strings (``"['A']"``): it is read with `ast.literal_eval` of a bounded field (a
literal, never code; nothing is unpickled) and its strings joined by a blank line; text that is
not such a list is kept as it is. An empty correctness cell means the model was not run on that
query: it is left out of the query's ``models``.

The published files repeat some sample ids (each time with another prompt and only some models'
outcomes) and some prompts (under two ids). Ids and queries must be unique, so such a repeat is
an error naming both places, unless ``drop_repeats``: then every row of a repeated id or query
is left out (none of the copies is more right than another), and the caller is told how many.
"""

from __future__ import annotations

import ast
import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import OutcomesError
from swarm.eval.outcomes.matrix import MAX_FILE_BYTES, ModelOutcome, OutcomeRow, check_unique, open_bounded
from swarm.replaytable import normalise_query

MAX_FIELD_CHARS = 1 << 20  # one prompt or response; RouterBench's longest are a few KB
REQUIRED = ("sample_id", "prompt", "eval_name")
IGNORED = ("", "oracle_model_to_route_to")
RESPONSE, COST = "|model_response", "|total_cost"


@dataclass
class Converted:
    rows: list[OutcomeRow]
    dropped: int  # rows left out because their id or query repeats (with drop_repeats)
    first_repeat: str  # where the first repeat was, for the message


def read_routerbench(paths: Sequence[str | Path], drop_repeats: bool = False) -> Converted:
    """The queries of one or more RouterBench CSV files (train and test files may be passed together)."""
    rows: list[OutcomeRow] = []
    places: list[tuple[str, int]] = []
    for path in paths:
        for line, row in _read_file(Path(path)):
            rows.append(row)
            places.append((str(path), line))
    if not rows:
        raise OutcomesError(", ".join(map(str, paths)), "", "no rows")
    if not drop_repeats:
        try:
            check_unique(rows, places)
        except OutcomesError as exc:
            raise OutcomesError(exc.source, "", f"{exc.problem} (--drop-repeats leaves out every copy)", exc.line) from None
        return Converted(rows, 0, "")
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts["id:" + row.id] += 1
        counts["q:" + normalise_query(row.query)] += 1
    repeated = [i for i, row in enumerate(rows) if counts["id:" + row.id] > 1 or counts["q:" + normalise_query(row.query)] > 1]
    first = f"{places[repeated[0]][0]}:{places[repeated[0]][1]}" if repeated else ""
    drop = set(repeated)
    kept = [row for i, row in enumerate(rows) if i not in drop]
    if not kept:
        raise OutcomesError(", ".join(map(str, paths)), "", "every row repeats an id or a query")
    return Converted(kept, len(drop), first)


def _read_file(path: Path):
    """(line where the row starts, OutcomeRow) for each data row of one CSV file."""
    source = str(path)
    with open_bounded(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.reader(_bounded(text, source))
        old_limit = csv.field_size_limit(MAX_FIELD_CHARS)
        try:
            header = _next(reader, source)
            if header is None:
                raise OutcomesError(source, "", "empty file: no header row")
            columns = _columns(header, source)
            while True:
                line = reader.line_num + 1
                values = _next(reader, source)
                if values is None:
                    return
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise OutcomesError(source, "", f"{len(values)} fields where the header has {len(header)}", line)
                yield line, _row(dict(zip(header, values)), columns, source, line)
        finally:
            csv.field_size_limit(old_limit)


def _bounded(text: io.TextIOBase, source: str):
    read = 0
    for chunk in text:
        read += len(chunk)
        if read > MAX_FILE_BYTES:
            raise OutcomesError(source, "", f"the file is larger than {MAX_FILE_BYTES >> 20} MiB; is it the right file?")
        yield chunk


def _next(reader, source: str) -> list[str] | None:
    line = reader.line_num + 1
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:  # a field over the limit, a NUL byte, an unclosed quote at the end
        raise OutcomesError(source, "", f"not a readable CSV row ({exc})", line) from None
    except UnicodeDecodeError as exc:
        raise OutcomesError(source, "", f"not UTF-8 text (byte {exc.start + 1} of a block near here)", line) from None


def _columns(header: list[str], source: str) -> list[str]:
    """The model names, after checking every column they and the format need is there."""
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise OutcomesError(source, "", f"missing column {missing[0]!r} (a RouterBench CSV has {', '.join(REQUIRED)} and per model "
                                        f"'<model>', '<model>{RESPONSE}', '<model>{COST}')", 1)
    twice = [c for c in header if header.count(c) > 1]
    if twice:
        raise OutcomesError(source, "", f"column {twice[0][:80]!r} appears twice", 1)
    models = [c for c in header if c not in REQUIRED and c not in IGNORED and "|" not in c]
    if not models:
        raise OutcomesError(source, "", "no model columns", 1)
    for c in header:
        if "|" in c and c.rsplit("|", 1)[0] not in models:
            raise OutcomesError(source, "", f"column {c[:80]!r} names no model column", 1)
    for m in models:
        for suffix in (RESPONSE, COST):
            if m + suffix not in header:
                raise OutcomesError(source, "", f"missing column {(m + suffix)[:80]!r}", 1)
    return models


def _row(cells: dict[str, str], models: list[str], source: str, line: int) -> OutcomeRow:
    for c in REQUIRED:
        if not cells[c].strip():
            raise OutcomesError(source, f"column {c!r}", "empty", line)
    outcomes = {}
    for m in models:
        if not cells[m].strip():
            continue  # not run on this query
        outcomes[m] = ModelOutcome(correct=_correct(cells[m], m, source, line), answer=_text(cells[m + RESPONSE]),
                                   cost=_cost(cells[m + COST], m, source, line))
    if not outcomes:
        raise OutcomesError(source, "", "no model has an outcome on this query", line)
    query = _text(cells["prompt"])
    if not query.strip():
        raise OutcomesError(source, "column 'prompt'", "an empty prompt", line)
    return OutcomeRow(id=cells["sample_id"].strip(), query=query, domain=cells["eval_name"].strip(), models=outcomes)


def _correct(value: str, model: str, source: str, line: int) -> float:
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if x not in (0.0, 1.0):
        raise OutcomesError(source, f"column {model[:80]!r}", f"correctness must be 0 or 1, got {value[:40]!r}", line)
    return x


def _cost(value: str, model: str, source: str, line: int) -> float:
    column = f"column {(model + COST)[:80]!r}"
    try:
        x = float(value)
    except ValueError:
        raise OutcomesError(source, column, f"not a number: {value[:40]!r}", line) from None
    if not math.isfinite(x) or x < 0:
        raise OutcomesError(source, column, f"a cost must be a finite number of dollars >= 0, got {value[:40]!r}", line)
    return x


def _text(value: str) -> str:
    """A prompt or response: RouterBench's list-of-strings literal as text, anything else unchanged."""
    stripped = value.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return value
    try:
        parts = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value
    if isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts):
        return "\n\n".join(parts)
    return value
