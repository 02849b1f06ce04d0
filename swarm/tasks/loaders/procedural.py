"""reasoning-gym families at graded difficulty, as TaskItems graded by reasoning-gym's own scorer.

Difficulty levels are ours, mapped onto each family's own config knobs (RG_LEVELS below; levels
do not overlap, so a higher level is strictly harder along the knob):

| family           | 1                         | 2                        | 3                          | 4                                   |
|------------------|---------------------------|--------------------------|----------------------------|-------------------------------------|
| basic_arithmetic | 2 terms, 1 digit, + -     | 2-3 terms, 1-2 digits, * | 3-4 terms, 2-3 digits, / ()| 5-6 terms, 3-4 digits, negation     |
| chain_sum        | 2 terms, 1 digit          | 3 terms, 2 digits        | 4-5 terms, 3 digits        | 6-8 terms, 4-5 digits, negatives    |
| products         | 2 factors, 1 digit        | 2 factors, 2 digits      | 2 factors, 3 digits        | 3 factors, 3-4 digits               |
| leg_counting     | 1-2 animals, 1-3 each     | 2-4 animals, 1-5 each    | 5-7 animals, 1-10 each     | 8-12 animals, 5-20 each             |
| gsm_symbolic     | its only setting (1.0)    |                          |                            |                                     |
| letter_counting  | 1-3 words                 | 5-8 words                | 10-15 words                | 20-30 words                         |
| number_sorting   | 3 integers in 0..100      | 4-5, 0-1 decimals, +-100 | 6-8, 0-2 decimals, +-1000  | 10-15, 1-3 decimals, +-10000        |
| spell_backward   | 3-4 letters               | 5-6 letters              | 7-8 letters                | 9-10 letters                        |
| gcd              | 2 numbers <= 20           | 2 numbers <= 100         | 2 numbers <= 1000          | 3 numbers <= 10000                  |

Splits: an item's split is fixed by a hash of its question text (sha256 of family and question,
mod 10: 0-5 train, 6-7 validation, 8-9 test), whatever the seed or level, so the splits never
share a question. `seed` picks the generator stream; a loader draws from it until it has `n`
distinct questions of the requested split. Small levels have few distinct questions (products
level 1 has about 100 in all); when fewer than `n` exist, `if_short` says what to do: "raise"
(the default), "repeat" (fill up with repeated questions, ids suffixed /repeatK) or "truncate"
(return the distinct ones only).

Each item: gold = the entry's answer, verifier "reasoning_gym", meta = {"rg_dataset", "rg_entry"
(the entry made JSON-safe), "rg_config"}; domain "rg/<family>".
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._common import PACKAGES, SPLITS, check_split, split_sizes
from swarm.tasks.loaders._errors import DatasetError, DatasetPackageMissing, UnknownTask

_OPS2, _OPS3, _OPS4 = ("+", "-"), ("+", "-", "*"), ("+", "-", "*", "/")
RG_LEVELS: dict[str, dict[int, dict[str, Any]]] = {
    "basic_arithmetic": {
        1: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": _OPS2, "allow_parentheses": False, "allow_negation": False},
        2: {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": _OPS3, "allow_parentheses": False, "allow_negation": False},
        3: {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 3, "operators": _OPS4, "allow_parentheses": True, "allow_negation": False},
        4: {"min_terms": 5, "max_terms": 6, "min_digits": 3, "max_digits": 4, "operators": _OPS4, "allow_parentheses": True, "allow_negation": True},
    },
    "chain_sum": {
        1: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        2: {"min_terms": 3, "max_terms": 3, "min_digits": 2, "max_digits": 2},
        3: {"min_terms": 4, "max_terms": 5, "min_digits": 3, "max_digits": 3},
        4: {"min_terms": 6, "max_terms": 8, "min_digits": 4, "max_digits": 5, "allow_negation": True},
    },
    "products": {
        1: {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        2: {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2},
        3: {"min_terms": 2, "max_terms": 2, "min_digits": 3, "max_digits": 3},
        4: {"min_terms": 3, "max_terms": 3, "min_digits": 3, "max_digits": 4},
    },
    "leg_counting": {
        1: {"min_animals": 1, "max_animals": 2, "min_instances": 1, "max_instances": 3},
        2: {"min_animals": 2, "max_animals": 4, "min_instances": 1, "max_instances": 5},
        3: {"min_animals": 5, "max_animals": 7, "min_instances": 1, "max_instances": 10},
        4: {"min_animals": 8, "max_animals": 12, "min_instances": 5, "max_instances": 20},
    },
    "gsm_symbolic": {1: {"difficulty": 1.0}},  # reasoning-gym 0.1.25 supports only 1.0
    "letter_counting": {
        1: {"min_words": 1, "max_words": 3},
        2: {"min_words": 5, "max_words": 8},
        3: {"min_words": 10, "max_words": 15},
        4: {"min_words": 20, "max_words": 30},
    },
    "number_sorting": {
        1: {"min_numbers": 3, "max_numbers": 3, "min_decimals": 0, "max_decimals": 0, "min_value": 0, "max_value": 100},
        2: {"min_numbers": 4, "max_numbers": 5, "min_decimals": 0, "max_decimals": 1, "min_value": -100, "max_value": 100},
        3: {"min_numbers": 6, "max_numbers": 8, "min_decimals": 0, "max_decimals": 2, "min_value": -1000, "max_value": 1000},
        4: {"min_numbers": 10, "max_numbers": 15, "min_decimals": 1, "max_decimals": 3, "min_value": -10000, "max_value": 10000},
    },
    "spell_backward": {
        1: {"min_word_len": 3, "max_word_len": 4},
        2: {"min_word_len": 5, "max_word_len": 6},
        3: {"min_word_len": 7, "max_word_len": 8},
        4: {"min_word_len": 9, "max_word_len": 10},
    },
    "gcd": {
        1: {"min_value": 1, "max_value": 20},
        2: {"min_value": 1, "max_value": 100},
        3: {"min_value": 1, "max_value": 1000},
        4: {"min_numbers": 3, "max_numbers": 3, "min_value": 1, "max_value": 10000},
    },
}
RG_FAMILIES: tuple[str, ...] = tuple(RG_LEVELS)
_BUCKETS: tuple[Split, ...] = ("train",) * 6 + ("validation",) * 2 + ("test",) * 2


def rg_difficulties(family: str) -> tuple[int, ...]:
    if family not in RG_LEVELS:
        raise UnknownTask("reasoning-gym family", family, RG_FAMILIES)
    return tuple(RG_LEVELS[family])


def rg_split_of(family: str, question: str) -> Split:
    """The split a question belongs to, whatever the seed or level."""
    digest = hashlib.sha256(f"{family}\x00{question}".encode()).digest()
    return _BUCKETS[int.from_bytes(digest[:8], "big") % 10]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_json_safe(v) for v in value), key=repr)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)  # Fraction, Decimal, enums


def _reasoning_gym():
    module, requirement = PACKAGES["reasoning_gym"]
    try:
        import reasoning_gym
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        if missing == module:
            raise DatasetPackageMissing("reasoning_gym", requirement) from None
        raise DatasetPackageMissing(
            "reasoning_gym", requirement, f"it cannot import {missing!r}; install the pins in requirements-datasets.txt"
        ) from None
    return reasoning_gym


def _stream_seed(family: str, difficulty: int, split: Split, seed: int) -> int:
    digest = hashlib.sha256(f"rg|{family}|{difficulty}|{split}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _generate(family: str, difficulty: int, split: Split, n: int, seed: int, if_short: str) -> list[TaskItem]:
    rg = _reasoning_gym()
    config = RG_LEVELS[family][difficulty]
    budget = 40 * n + 400  # draws; about 20% fall in validation or test
    # size = budget: some families precompute per-index state for the whole virtual size.
    dataset = rg.create_dataset(family, seed=_stream_seed(family, difficulty, split, seed), size=budget, **config)
    fresh: list[dict] = []
    repeats: list[dict] = []
    seen: set[str] = set()
    for idx in range(budget):
        if len(fresh) == n:
            break
        entry = dataset[idx]
        if rg_split_of(family, entry["question"]) != split:
            continue
        (repeats if entry["question"] in seen else fresh).append(entry)
        seen.add(entry["question"])
    if len(fresh) < n and if_short == "raise":
        raise DatasetError(
            f"reasoning-gym {family} at difficulty {difficulty} has only {len(fresh)} distinct {split} questions "
            f"of the {n} asked for; ask for fewer, or pass if_short='repeat' or 'truncate'"
        )
    entries = fresh + (repeats[: n - len(fresh)] if if_short == "repeat" else [])
    items = []
    for k, entry in enumerate(entries):
        question = entry["question"]
        digest = hashlib.sha256(question.encode()).hexdigest()[:12]
        item_id = f"rg/{family}/{difficulty}/{digest}" + (f"/repeat{k}" if k >= len(fresh) else "")
        meta = {"rg_dataset": family, "rg_entry": _json_safe(entry), "rg_config": _json_safe(config)}
        items.append(TaskItem(item_id, question, str(entry["answer"]), "reasoning_gym", f"rg/{family}", difficulty, split, meta))
    return items


def load_reasoning_gym(
    family: str,
    difficulty: int = 1,
    n: int = 100,
    seed: int = 0,
    split: Split | None = None,
    limit: int | None = None,
    if_short: Literal["raise", "repeat", "truncate"] = "raise",
) -> list[TaskItem]:
    """`n` items of a reasoning-gym family at one difficulty level (see the table above).

    With a split, `n` items of that split; with split=None, `n` in all, divided 60/20/20 (train,
    validation, test). `limit` cuts the result further.
    """
    levels = rg_difficulties(family)
    if difficulty not in levels:
        raise UnknownTask(f"reasoning-gym {family} difficulty", difficulty, levels)
    check_split(split)
    if if_short not in ("raise", "repeat", "truncate"):
        raise UnknownTask("if_short", if_short, ("raise", "repeat", "truncate"))
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counts = {split: n} if split is not None else split_sizes(n)
    items = [it for name in SPLITS if name in counts for it in _generate(family, difficulty, name, counts[name], seed, if_short)]
    return items if limit is None else items[:limit]

