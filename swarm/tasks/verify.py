"""Grading a free-form response against a task item.

- numeric: the extracted number equals the gold one after `normalize_number`, within a relative
  tolerance of 1e-9 (absolute 1e-9 below 1) for float noise ("3.0" == "3", "0.5" == "1/2",
  "0.30000000000000004" == "0.3"); an answer rounded to fewer digits ("0.33" for 1/3) is wrong.
- choice: the extracted letter equals the gold letter. The gold is `meta["gold_index"]` (0-based)
  when given, else `gold` as a letter ("B", "(b)"), else `gold` as the text of an option. Options
  come from `meta["options"]` (a list in A, B, ... order, or a letter -> text mapping), else from
  the prompt's "A. text" lines; they let an answer given as an option's text count.
- exact: `normalize_text` equality with `gold` or any of `meta["aliases"]`; when both sides read as
  numbers, numeric equality ("42.0" == "42").
- reasoning_gym: reasoning-gym's own `score_answer` for the dataset `meta["rg_dataset"]` on the
  entry `meta["rg_entry"]` (the dict its dataset produced); a score >= 1.0 is correct.

A rejection ("I don't know!") and a response with no answer are never correct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from swarm.prompts import is_rejection
from swarm.tasks.answers import KINDS, LETTERS, extract_answer, normalize_number, normalize_text, parse_options
from swarm.tasks.base import TaskItem

_TOLERANCE = Decimal("1e-9")


@dataclass(frozen=True)
class Grade:
    extracted: str | None  # the final answer found in the response (None: none, or a rejection)
    correct: bool
    rejected: bool  # the response is the reject phrase


def grade(item: TaskItem, response: str) -> Grade:
    """The extracted answer, whether it is correct, and whether the response is a rejection."""
    if item.verifier not in KINDS:
        raise ValueError(f"task item {item.id!r}: unknown verifier {item.verifier!r} (expected one of: {', '.join(KINDS)})")
    if is_rejection(response or ""):
        return Grade(None, False, True)
    options = _options(item) if item.verifier == "choice" else None
    extracted = extract_answer(response, item.verifier, options)
    if extracted is None:
        if item.verifier == "reasoning_gym":
            _score_fn(item)  # a misconfigured item fails loudly even when the response is empty
        return Grade(None, False, False)
    return Grade(extracted, _CHECKS[item.verifier](item, extracted), False)


def verify(item: TaskItem, response: str) -> bool:
    """Is the response's final answer correct for the item?"""
    return grade(item, response).correct


def numbers_equal(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= _TOLERANCE * max(Decimal(1), abs(b))


def _numeric(item: TaskItem, extracted: str) -> bool:
    gold = normalize_number(item.gold)
    if gold is None:
        raise ValueError(f"task item {item.id!r}: numeric gold answer {item.gold!r} is not a number")
    value = normalize_number(extracted)
    return value is not None and numbers_equal(value, gold)


def _options(item: TaskItem) -> dict[str, str]:
    given = item.meta.get("options")
    if isinstance(given, dict):
        return {str(k).strip().upper(): str(v) for k, v in given.items()}
    if isinstance(given, list):
        return {LETTERS[i]: str(v) for i, v in enumerate(given[: len(LETTERS)])}
    return parse_options(item.prompt)


def _gold_letter(item: TaskItem) -> str:
    index = item.meta.get("gold_index")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(LETTERS):
        return LETTERS[index]
    gold = item.gold.strip().strip("().").strip().upper()
    if len(gold) == 1 and gold in LETTERS:
        return gold
    by_text = [letter for letter, text in _options(item).items() if normalize_text(text) == normalize_text(item.gold)]
    if len(by_text) == 1:
        return by_text[0]
    raise ValueError(f"task item {item.id!r}: choice gold {item.gold!r} is neither a letter A-J, nor meta['gold_index'], nor one option's text")


def _choice(item: TaskItem, extracted: str) -> bool:
    return extracted.strip().upper() == _gold_letter(item)


def _exact(item: TaskItem, extracted: str) -> bool:
    aliases = item.meta.get("aliases") or []
    if isinstance(aliases, str):
        aliases = [aliases]
    said = normalize_text(extracted)
    value = normalize_number(extracted)
    for gold in [item.gold, *aliases]:
        if said and said == normalize_text(gold):
            return True
        number = normalize_number(gold)
        if value is not None and number is not None and numbers_equal(value, number):
            return True
    return False


def _reasoning_gym(item: TaskItem, extracted: str) -> bool:
    entry = item.meta.get("rg_entry")
    score_fn = _score_fn(item)
    try:
        score = score_fn(extracted, entry)
    except Exception:  # noqa: BLE001 - a scorer choking on a malformed answer scores it 0
        return False
    return score is not None and float(score) >= 1.0


def _score_fn(item: TaskItem) -> Callable[[str | None, dict], float]:
    name, entry = item.meta.get("rg_dataset"), item.meta.get("rg_entry")
    if not isinstance(name, str) or not isinstance(entry, dict):
        raise ValueError(f"task item {item.id!r}: a reasoning_gym item needs meta['rg_dataset'] (a dataset name) "  # noqa: TRY004
                         "and meta['rg_entry'] (the entry dict the dataset produced)")
    try:
        return _rg_scorer(name)
    except ImportError:
        raise ValueError(f"task item {item.id!r}: the reasoning_gym verifier needs the reasoning-gym package "
                         "(pip install reasoning-gym==0.1.25)") from None
    except ValueError as exc:
        raise ValueError(f"task item {item.id!r}: reasoning-gym dataset {name!r}: {exc}") from None


@cache
def _rg_scorer(name: str) -> Callable[[str | None, dict], float]:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(name)


_CHECKS: dict[str, Callable[[TaskItem, str], bool]] = {
    "numeric": _numeric, "choice": _choice, "exact": _exact, "reasoning_gym": _reasoning_gym,
}
