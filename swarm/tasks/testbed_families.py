"""Procedural task families for the testbed, with graded difficulty 1..4.

Every family writes a short question (the user's text, e.g. ``23+58=``), a numeric gold answer,
and a worked solution: the steps a reply writes before its final answer, like a chain of thought.
A model's reply is ``<work>. The answer is: <gold>`` (`reply_text`; just the answer where a family has no steps); items are
`swarm.tasks.base.TaskItem`s graded by the numeric verifier, which reads the final answer only.
The worked solutions make each step local (one column of digits, one comparison, one running
total), which is what lets models of a few hundred thousand parameters learn the families on a
CPU in minutes; without them the largest rung solved a fifth of the items. Generation is
deterministic given a `random.Random`.

Families, their worked solution, and what difficulty means:

- ``add``: a+b, column by column from the units, each column ``x+y+carry=s``
  (``23+58=`` -> ``3+8+0=11,2+5+1=8. The answer is: 81``). Operand widths (digits) 1+2, 2+2,
  3+2, 3+3 for difficulty 1..4.
- ``sub``: a-b with a >= b, column by column, each ``x-y-borrow=d`` and a ``b`` where the column
  borrows; the same operand widths as ``add``.
- ``sum``: the sum of d+2 one-digit numbers, as running totals (``3+5=8,8+9=17``).
- ``max``: the larger of two (d+1)-digit numbers, comparing digits from the left up to the first
  that differs (``4=4,8>2``).
- ``rev``: the digits of a (d+2)-digit number in reverse order, with no worked solution (a
  string manipulation, unlike the arithmetic of the others). This family is out-of-domain: the
  base models train on it, but later self-awareness training must not (see `OOD_FAMILIES`).
  (Counting letters, its predecessor, was not learned by any rung within the CPU budget.)

Every (family, difficulty) cell has at least 900 distinct questions, so a held-out set of 200 per
cell leaves most of each cell to training.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from swarm.prompts import ANSWER_TEMPLATE
from swarm.tasks.base import Split, TaskItem

DIFFICULTIES = (1, 2, 3, 4)
FAMILIES = ("add", "sub", "sum", "max", "rev")
OOD_FAMILIES = ("rev",)  # held out of self-awareness training; the base models do see it
IN_DOMAIN_FAMILIES = tuple(f for f in FAMILIES if f not in OOD_FAMILIES)

Generated = tuple[str, int, str]  # question, answer, worked solution


def _num(rng: random.Random, digits: int) -> int:
    return rng.randint(0, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10**digits - 1)


WIDTHS = {1: (1, 2), 2: (2, 2), 3: (3, 2), 4: (3, 3)}  # add / sub operand digits by difficulty


def _pair(rng: random.Random, d: int) -> tuple[int, int]:
    wa, wb = WIDTHS[d]
    a, b = _num(rng, wa), _num(rng, wb)
    return (a, b) if rng.random() < 0.5 else (b, a)


def _columns(a: int, b: int) -> list[tuple[int, int]]:
    """(digit of a, digit of b) from the units up, the shorter number padded with zeros."""
    da, db = str(a)[::-1], str(b)[::-1]
    width = max(len(da), len(db))
    return [(int(da[i]) if i < len(da) else 0, int(db[i]) if i < len(db) else 0) for i in range(width)]


def _add(rng: random.Random, d: int) -> Generated:
    a, b = _pair(rng, d)
    steps, carry = [], 0
    for x, y in _columns(a, b):
        s = x + y + carry
        steps.append(f"{x}+{y}+{carry}={s}")
        carry = s // 10
    return f"{a}+{b}=", a + b, ",".join(steps)


def _sub(rng: random.Random, d: int) -> Generated:
    a, b = _pair(rng, d)
    a, b = max(a, b), min(a, b)
    steps, borrow = [], 0
    for x, y in _columns(a, b):
        v = x - y - borrow
        steps.append(f"{x}-{y}-{borrow}={v % 10}{'b' if v < 0 else ''}")
        borrow = int(v < 0)
    return f"{a}-{b}=", a - b, ",".join(steps)


def _sum(rng: random.Random, d: int) -> Generated:
    xs = [rng.randint(0, 9) for _ in range(d + 2)]
    steps, total = [], xs[0]
    for x in xs[1:]:
        steps.append(f"{total}+{x}={total + x}")
        total += x
    return "+".join(map(str, xs)) + "=", total, ",".join(steps)


def _max(rng: random.Random, d: int) -> Generated:
    a, b = _num(rng, d + 1), _num(rng, d + 1)
    steps = []
    for x, y in zip(str(a), str(b)):
        steps.append(f"{x}{'<' if x < y else '>' if x > y else '='}{y}")
        if x != y:
            break
    return f"max({a},{b})=", max(a, b), ",".join(steps)


def _rev(rng: random.Random, d: int) -> Generated:
    # d+2 digits, neither end a zero, so that both the number and its reverse are written plainly
    digits = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(d)] + [rng.randint(1, 9)]
    text = "".join(map(str, digits))
    return f"reverse {text}=", int(text[::-1]), ""


GENERATORS: dict[str, Callable[[random.Random, int], Generated]] = {
    "add": _add, "sub": _sub, "sum": _sum, "max": _max, "rev": _rev,
}


def space_size(family: str, difficulty: int) -> int:
    """About how many distinct questions a family has at a difficulty (bounds held-out sets)."""
    def width(digits: int) -> int:
        return 10 if digits == 1 else 9 * 10 ** (digits - 1)

    wa, wb = (width(w) for w in WIDTHS[difficulty])
    wm = width(difficulty + 1)
    return {
        "add": wa * wb, "sub": wa * wb if wa != wb else wa * (wb + 1) // 2, "max": wm * (wm - 1) // 2,
        "sum": 10 ** (difficulty + 2), "rev": 81 * 10**difficulty,
    }[family]


def check(family: str, difficulty: int) -> None:
    if family not in GENERATORS:
        raise ValueError(f"unknown testbed task family {family!r} (expected one of: {', '.join(FAMILIES)})")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r} for testbed family {family!r} (expected one of 1, 2, 3, 4)")


def make_item(family: str, difficulty: int, rng: random.Random, split: Split = "test", index: int = 0) -> TaskItem:
    check(family, difficulty)
    question, answer, work = GENERATORS[family](rng, difficulty)
    return TaskItem(id=f"testbed/{family}/d{difficulty}/{split}/{index}", prompt=question, gold=str(answer),
                    verifier="numeric", domain=f"testbed/{family}", difficulty=difficulty, split=split,
                    meta={"work": work})


def reply_text(item: TaskItem) -> str:
    """The reply the testbed models are trained to give: the worked solution, then the answer template."""
    answer = ANSWER_TEMPLATE.format(answer=item.gold)
    return f"{item.meta['work']}. {answer}" if item.meta["work"] else answer


def held_out(seed: int, per_cell: int, families: tuple[str, ...] = FAMILIES) -> list[TaskItem]:
    """The held-out test set: up to `per_cell` distinct questions per (family, difficulty); a cell
    whose question space is small gets at most a quarter of it, so training keeps the rest."""
    items: list[TaskItem] = []
    for family in families:
        for d in DIFFICULTIES:
            rng = random.Random(f"testbed-test/{seed}/{family}/{d}")
            want = min(per_cell, space_size(family, d) // 4)
            seen: set[str] = set()
            tries = 0
            while len(seen) < want and tries < want * 50:
                tries += 1
                item = make_item(family, d, rng, "test", len(seen))
                if item.prompt not in seen:
                    seen.add(item.prompt)
                    items.append(item)
    return items


def training_stream(seed: int, exclude: set[str], families: tuple[str, ...] = FAMILIES):
    """An endless deterministic stream of training items, uniform over family x difficulty,
    never a question of the held-out set."""
    rng = random.Random(f"testbed-train/{seed}")
    cells = [(f, d) for f in families for d in DIFFICULTIES]
    i = 0
    while True:
        family, d = cells[rng.randrange(len(cells))]
        item = make_item(family, d, rng, "train", i)
        if item.prompt in exclude:
            continue
        i += 1
        yield item
