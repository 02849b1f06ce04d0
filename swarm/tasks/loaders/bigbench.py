"""Selected BIG-bench tasks: known_unknowns, strategyqa, qa_wikidata, arithmetic.

The task files come from the `bigbench==1.0.0` source archive on PyPI (358 MB). swarm ships
compact copies (only the fields used here, gzipped JSON lines, about 0.6 MB in all) under
swarm/tasks/data/bigbench/, made by `extract_bigbench(archive)`; SOURCES.md there records the
origin, the licence (Apache-2.0) and the checksums. `path=` reads either such a file or an
original `task.json`.

How each task becomes items:
- known_unknowns (46): multiple choice from `target_scores` (an answer and "Unknown"), options
  shuffled per item by a seed drawn from the question, so "Unknown" is not always the same letter.
- strategyqa (2,289 after merging one duplicated question): choice, A = Yes, B = No;
  `meta["explanation"]` keeps the reference reasoning.
- qa_wikidata (20,320 after merging duplicated prompts): a sentence to complete, exact match with
  the other accepted completions as `meta["aliases"]`.
- arithmetic (15,023 in 20 subtasks): numeric; difficulty = the operands' digit count (1-5),
  splits stratified by subtask.
Splits: the seeded 60/20/20 rule of _common.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._common import (
    DataFileError,
    DatasetUnavailable,
    canonical_number,
    ensure_writable_dir,
    read_jsonl,
    read_text,
    require_file,
    select,
    with_splits,
)
from swarm.tasks.loaders._errors import UnknownTask
from swarm.tasks.loaders.packaged import multiple_choice_prompt

BIGBENCH_TASKS: tuple[str, ...] = ("known_unknowns", "strategyqa", "qa_wikidata", "arithmetic")
DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "bigbench"
# The fields each shipped file keeps from an example of the original task.json.
_KEEP = {
    "known_unknowns": ("input", "target_scores"),
    "strategyqa": ("input", "target_scores", "target"),
    "qa_wikidata": ("input", "target"),
    "arithmetic": ("subtask", "input", "target"),
}


def _examples(source: Path) -> Iterator[tuple[int | None, dict]]:
    """(line or None, example) from a shipped .jsonl(.gz) or an original task.json."""
    if source.name.endswith((".jsonl", ".jsonl.gz")):
        yield from read_jsonl(source)
        return
    try:
        data = json.loads(read_text(source))
    except json.JSONDecodeError as exc:
        raise DataFileError(source, f"not valid JSON ({exc.msg})", exc.lineno) from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataFileError(source, "not a BIG-bench task.json (no 'examples' list)")
    for ex in data["examples"]:
        if isinstance(ex, dict) and "subtask" not in ex and data.get("name"):
            ex = {**ex, "subtask": data["name"]}
        yield None, ex


def _bad(source: Path, line: int | None, k: int, problem: str) -> DataFileError:
    return DataFileError(source, problem if line is not None else f"example {k}: {problem}", line)


def _choice(source: Path, line: int | None, k: int, ex: dict) -> tuple[list[str], int]:
    scores = ex.get("target_scores")
    if not isinstance(scores, dict) or len(scores) < 2:
        raise _bad(source, line, k, "needs 'target_scores' with at least two options")
    options = list(scores)
    best = [o for o in options if scores[o] == max(scores.values())]
    if len(best) != 1:
        raise _bad(source, line, k, "target_scores has no single best option")
    return options, options.index(best[0])


def _targets(source: Path, line: int | None, k: int, ex: dict) -> list[str]:
    target = ex.get("target")
    targets = [target] if isinstance(target, str) else target
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t.strip() for t in targets):
        raise _bad(source, line, k, "needs a non-empty 'target' string or list of strings")
    return [t.strip() for t in targets]


def _item(task: str, source: Path, line: int | None, k: int, ex: dict) -> TaskItem:
    question = ex.get("input")
    if not isinstance(question, str) or not question.strip():
        raise _bad(source, line, k, "needs a non-empty 'input' string")
    if task == "known_unknowns":
        options, best = _choice(source, line, k, ex)
        order = list(range(len(options)))
        random.Random(f"known_unknowns|{question}").shuffle(order)
        options = [options[i] for i in order]
        gold = "ABCDEFGHIJ"[order.index(best)]
        meta = {"options": options, "answerable": options[order.index(best)] != "Unknown"}
        return TaskItem("", multiple_choice_prompt(question, options), gold, "choice", "bigbench/known_unknowns", 1, "test", meta)
    if task == "strategyqa":
        options, best = _choice(source, line, k, ex)
        if sorted(options) != ["No", "Yes"]:
            raise _bad(source, line, k, f"expected options Yes/No, got {options}")
        gold = "A" if options[best] == "Yes" else "B"
        meta = {"options": ["Yes", "No"], "explanation": str(ex.get("target", ""))}
        return TaskItem("", multiple_choice_prompt(question, ["Yes", "No"]), gold, "choice", "bigbench/strategyqa", 1, "test", meta)
    if task == "qa_wikidata":
        targets = _targets(source, line, k, ex)
        prompt = f"Complete the sentence: {question.strip()} ___"
        return TaskItem("", prompt, targets[0], "exact", "bigbench/qa_wikidata", 1, "test", {"aliases": targets[1:]})
    subtask = ex.get("subtask")
    if not isinstance(subtask, str) or not subtask[:1].isdigit():
        raise _bad(source, line, k, "needs a 'subtask' such as '2_digit_addition'")
    try:
        gold = canonical_number(_targets(source, line, k, ex)[0])
    except ValueError as exc:
        raise _bad(source, line, k, str(exc)) from None
    meta = {"subtask": subtask}
    return TaskItem("", question.strip(), gold, "numeric", "bigbench/arithmetic", int(subtask.split("_")[0]), "test", meta)


def load_bigbench(
    task: str, split: Split | None = None, seed: int = 0, limit: int | None = None, path: str | Path | None = None
) -> list[TaskItem]:
    """Items of one BIG-bench task (see the module docstring for each task's format)."""
    if task not in BIGBENCH_TASKS:
        raise UnknownTask("BIG-bench task", task, BIGBENCH_TASKS)
    if path is not None:
        source = require_file(f"bigbench/{task}", path)
    else:
        source = DATA_DIR / f"{task}.jsonl.gz"
        if not source.is_file():
            raise DatasetUnavailable(
                f"bigbench/{task}",
                f"BIG-bench task {task!r}: the shipped file {source} is missing; reinstall swarm, or rebuild it with "
                "swarm.tasks.loaders.extract_bigbench('bigbench-1.0.0.tar.gz') from "
                "`pip download --no-deps --no-binary :all: bigbench==1.0.0`",
            )
    items: list[TaskItem] = []
    seen: dict[str, int] = {}  # prompt -> index; a repeated question becomes one item
    per_stratum: dict[str, int] = {}
    for k, (line, ex) in enumerate(_examples(source)):
        if not isinstance(ex, dict):
            raise _bad(source, line, k, "an example must be a JSON object")
        item = _item(task, source, line, k, ex)
        if item.prompt in seen:
            first = items[seen[item.prompt]]
            if item.verifier == "exact":
                extra = [a for a in [item.gold, *item.meta["aliases"]] if a != first.gold and a not in first.meta["aliases"]]
                first.meta["aliases"].extend(extra)
            continue
        stratum = item.meta.get("subtask", task)
        seen[item.prompt] = len(items)
        number = per_stratum[stratum] = per_stratum.get(stratum, -1) + 1
        item_id = f"bigbench/arithmetic/{stratum}/{number}" if task == "arithmetic" else f"bigbench/{task}/{number}"
        items.append(TaskItem(item_id, item.prompt, item.gold, item.verifier, item.domain, item.difficulty, "test", item.meta))
    strata = [it.meta.get("subtask", task) for it in items]
    items = with_splits(items, strata, seed, f"bigbench/{task}")
    return select(items, split, seed, f"bigbench/{task}", limit)


def extract_bigbench(archive: str | Path, out_dir: str | Path = DATA_DIR) -> dict:
    """Write the compact task files (and manifest.json) from the bigbench-1.0.0 source archive.

    Reads the archive once; output is byte-for-byte reproducible (gzip with mtime 0).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise DatasetUnavailable("bigbench", f"no such archive {archive}; get it with `pip download --no-deps --no-binary :all: bigbench==1.0.0`")
    out = ensure_writable_dir(out_dir, "pass another out_dir")
    found: dict[str, list[tuple[str, bytes]]] = {t: [] for t in BIGBENCH_TASKS}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if not member.isfile() or parts[-1] != "task.json" or "benchmark_tasks" not in parts:
                    continue
                rest = parts[parts.index("benchmark_tasks") + 1 : -1]
                if len(rest) == 1 and rest[0] in ("known_unknowns", "strategyqa", "qa_wikidata") or len(rest) == 2 and rest[0] == "arithmetic":
                    found[rest[0]].append((member.name, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataFileError(archive, f"not a readable source archive ({exc})") from None
    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    manifest: dict = {"archive": archive.name, "archive_sha256": digest.hexdigest(), "tasks": {}}
    for task, members in found.items():
        if not members:
            raise DataFileError(archive, f"has no task.json for {task!r}")
        lines, sources, canary = [], [], ""
        for name, raw in sorted(members):
            data = json.loads(raw)
            canary = data.get("canary", canary)
            sources.append({"member": name, "sha256": hashlib.sha256(raw).hexdigest(), "examples": len(data["examples"])})
            for ex in data["examples"]:
                ex = {**ex, "subtask": data["name"]}
                lines.append(json.dumps({key: ex[key] for key in _KEEP[task] if key in ex}, ensure_ascii=False))
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
            gz.write(("\n".join(lines) + "\n").encode("utf-8"))
        target = out / f"{task}.jsonl.gz"
        target.write_bytes(buf.getvalue())
        manifest["tasks"][task] = {
            "file": target.name,
            "examples": len(lines),
            "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
            "canary": canary,
            "sources": sources,
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
