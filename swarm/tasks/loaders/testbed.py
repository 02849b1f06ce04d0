"""The testbed's procedural families (swarm.tasks.testbed_families) as a loader: ``testbed/<family>``.

Splits, per family and difficulty:
- test and validation: the two halves of the ladder's held-out set (``held_out(seed, 200)``, the
  items the quick ladder is evaluated on and never trained on): even positions test, odd validation;
- train: distinct questions drawn from the ladder's own training stream (never a held-out question).

`n` caps the items per difficulty (all of a held-out half, 100, when None; 100 for train);
`difficulty` picks one level (default: 1 to 4, interleaved, so that `limit` keeps every level). Items are numeric-graded; their `meta["work"]`
holds the worked solution the testbed models are trained to write.
"""

from __future__ import annotations

import itertools

from swarm.tasks.base import Split, TaskItem
from swarm.tasks.loaders._common import check_split
from swarm.tasks.loaders._errors import DatasetError, UnknownTask

HELD_OUT_PER_CELL = 200  # the quick ladder's evaluation set per family x difficulty


def load_testbed(family: str, difficulty: int | None = None, n: int | None = None, seed: int = 0,
                 split: Split | None = None, limit: int | None = None) -> list[TaskItem]:
    from swarm.tasks.testbed_families import DIFFICULTIES, FAMILIES, held_out, space_size, training_stream

    if family not in FAMILIES:
        raise UnknownTask("testbed task family", family, FAMILIES)
    if difficulty is not None and difficulty not in DIFFICULTIES:
        raise UnknownTask(f"difficulty of testbed/{family}", difficulty, DIFFICULTIES)
    check_split(split)
    levels = DIFFICULTIES if difficulty is None else (difficulty,)
    held = [i for i in held_out(seed, HELD_OUT_PER_CELL, (family,)) if i.difficulty in levels]
    items: list[TaskItem] = []
    for want in ("test", "validation", "train") if split is None else (split,):
        cells = []
        for level in levels:
            if want == "train":
                stream = training_stream(seed, {i.prompt for i in held}, (family,))
                room = (space_size(family, level) - HELD_OUT_PER_CELL) // 2  # distinct ones come slowly beyond this
                if (n or 100) > room:
                    raise DatasetError(f"testbed/{family} difficulty {level} has too few distinct training questions for "
                                       f"n={n} (at most {room}); ask for fewer")
                cell, seen = [], set()
                while len(cell) < (n or 100):
                    item = next(stream)
                    if item.difficulty == level and item.prompt not in seen:
                        seen.add(item.prompt)
                        cell.append(item)
            else:
                cell = [i for i in held if i.difficulty == level][want == "validation"::2][:n]
                cell = [TaskItem(i.id.replace("/test/", f"/{want}/"), i.prompt, i.gold, i.verifier, i.domain,
                                 i.difficulty, want, i.meta) for i in cell]
            cells.append(cell)
        # difficulties interleaved, so that a `limit` keeps every level
        items += [i for row in itertools.zip_longest(*cells) for i in row if i is not None]
    return items[:limit]
