"""Procedural task families for the testbed, with graded difficulty 1..4.

Every family writes a short question (the user's text, e.g. ``23+58=``) and a short numeric
gold answer; items are `swarm.tasks.base.TaskItem`s graded by the numeric verifier. Generation is
deterministic given a `random.Random`.

Families and what difficulty means:

- ``add``: a+b with operand widths (digits) 1+2, 2+2, 3+2, 3+3 for difficulty 1..4.
- ``sub``: a-b with a >= b, the same operand widths as ``add``.
- ``sum``: the sum of d+2 one-digit numbers (a multi-step sum).
- ``max``: the larger of two (d+1)-digit numbers (comparison).
- ``count``: how many times a letter occurs in a string of 2*d+4 letters drawn from a, b, c
  (counting).

Every (family, difficulty) cell has at least 900 distinct questions, so a held-out set of 200 per
cell leaves most of each cell to training. This family is out-of-domain: the base models train on it, but later
  self-awareness training must not (see `OOD_FAMILIES`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from swarm.tasks.base import Split, TaskItem

DIFFICULTIES = (1, 2, 3, 4)
FAMILIES = ("add", "sub", "sum", "max", "count")
OOD_FAMILIES = ("count",)  # held out of self-awareness training; the base models do see it
IN_DOMAIN_FAMILIES = tuple(f for f in FAMILIES if f not in OOD_FAMILIES)


def _num(rng: random.Random, digits: int) -> int:
    return rng.randint(0, 9) if digits == 1 else rng.randint(10 ** (digits - 1), 10**digits - 1)


WIDTHS = {1: (1, 2), 2: (2, 2), 3: (3, 2), 4: (3, 3)}  # add / sub operand digits by difficulty


def _pair(rng: random.Random, d: int) -> tuple[int, int]:
    wa, wb = WIDTHS[d]
    a, b = _num(rng, wa), _num(rng, wb)
    return (a, b) if rng.random() < 0.5 else (b, a)


def _add(rng: random.Random, d: int) -> tuple[str, int]:
    a, b = _pair(rng, d)
    return f"{a}+{b}=", a + b


def _sub(rng: random.Random, d: int) -> tuple[str, int]:
    a, b = _pair(rng, d)
    a, b = max(a, b), min(a, b)
    return f"{a}-{b}=", a - b


def _sum(rng: random.Random, d: int) -> tuple[str, int]:
    xs = [rng.randint(0, 9) for _ in range(d + 2)]
    return "+".join(map(str, xs)) + "=", sum(xs)


def _max(rng: random.Random, d: int) -> tuple[str, int]:
    a, b = _num(rng, d + 1), _num(rng, d + 1)
    return f"max({a},{b})=", max(a, b)


def _count(rng: random.Random, d: int) -> tuple[str, int]:
    letter = rng.choice("abc")
    text = "".join(rng.choice("abc") for _ in range(2 * d + 4))
    return f"count {letter} in {text}=", text.count(letter)


GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, int]]] = {
    "add": _add, "sub": _sub, "sum": _sum, "max": _max, "count": _count,
}


def space_size(family: str, difficulty: int) -> int:
    """About how many distinct questions a family has at a difficulty (bounds held-out sets)."""
    def width(digits: int) -> int:
        return 10 if digits == 1 else 9 * 10 ** (digits - 1)

    wa, wb = (width(w) for w in WIDTHS[difficulty])
    wm = width(difficulty + 1)
    return {
        "add": wa * wb, "sub": wa * wb if wa != wb else wa * (wb + 1) // 2, "max": wm * (wm - 1) // 2,
        "sum": 10 ** (difficulty + 2), "count": 3 * 3 ** (2 * difficulty + 4),
    }[family]


def check(family: str, difficulty: int) -> None:
    if family not in GENERATORS:
        raise ValueError(f"unknown testbed task family {family!r} (expected one of: {', '.join(FAMILIES)})")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"unknown difficulty {difficulty!r} for testbed family {family!r} (expected one of 1, 2, 3, 4)")


def make_item(family: str, difficulty: int, rng: random.Random, split: Split = "test", index: int = 0) -> TaskItem:
    check(family, difficulty)
    question, answer = GENERATORS[family](rng, difficulty)
    return TaskItem(id=f"testbed/{family}/d{difficulty}/{split}/{index}", prompt=question, gold=str(answer),
                    verifier="numeric", domain=f"testbed/{family}", difficulty=difficulty, split=split)


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
