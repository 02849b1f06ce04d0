"""Reading a JSON-lines file a user hands us (a replay table, an outcome matrix): bounded, and every
problem named with its line."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def json_lines(fh, fail: Callable[[int, str], Exception], max_bytes: int | None = None) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line of the binary file `fh`; `fail(line, problem)`
    builds the error raised for a line that is not UTF-8 or not JSON, or once more than `max_bytes` are read."""
    read = 0
    for number, raw in enumerate(fh, 1):
        read += len(raw)
        if max_bytes is not None and read > max_bytes:
            raise fail(number, f"the file is larger than {max_bytes >> 20} MiB; is it the right file?")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(number, f"not UTF-8 text (byte {exc.start + 1} of the line)") from None
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (ValueError, RecursionError) as exc:  # not JSON, a number past the digit limit, nesting past the stack
            raise fail(number, f"not valid JSON ({getattr(exc, 'msg', None) or str(exc)[:120]})") from None


def read_json_lines(path: Path, fail: Callable[[int, str], Exception], max_bytes: int | None = None) -> list[tuple[int, Any]]:
    with Path(path).open("rb") as fh:
        return list(json_lines(fh, fail, max_bytes))
