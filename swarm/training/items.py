"""Training and held-out queries for a recipe: never the same question in both, never an
out-of-domain family."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from swarm.tasks.base import TaskItem
from swarm.training.recipe import Recipe, RecipeError


def eval_items(recipe: Recipe) -> list[TaskItem]:
    t = recipe.tasks
    if t.source == "testbed":
        from swarm.tasks.testbed_families import held_out

        items = held_out(recipe.seed, t.eval_per_cell, tuple(t.families))
    else:
        items = [i for name in t.families for i in _load(name, t.eval_split, recipe.seed)[: t.eval_per_cell]]
    if not items:
        raise RecipeError(recipe.name, "tasks", f"the held-out split ({t.eval_split}) of {', '.join(t.families)} has no items")
    return items


def ood_items(recipe: Recipe) -> list[TaskItem]:
    """Held-out queries of the families kept out of training (the testbed's out-of-domain ones),
    for the reports only: does self-awareness, and the knowledge, hold where training never went?
    Empty for loader datasets (their domains are the user's to choose)."""
    t = recipe.tasks
    if t.source != "testbed":
        return []
    from swarm.tasks.testbed_families import OOD_FAMILIES, held_out

    return held_out(recipe.seed, t.eval_per_cell, tuple(OOD_FAMILIES))


def training_prompts(recipe: Recipe) -> list[str]:
    """The texts of the recipe's training queries (a probe's validation queries, in its order), made again: the items are deterministic."""
    return [i.prompt for i in training_items(recipe, eval_items(recipe))]


def training_items(recipe: Recipe, exclude: list[TaskItem]) -> list[TaskItem]:
    t = recipe.tasks
    held = {i.prompt for i in exclude}
    if t.source == "testbed":
        from swarm.tasks.testbed_families import training_stream

        stream = training_stream(recipe.seed, held, tuple(t.families))
        seen: set[str] = set()
        items = []
        for item in itertools.islice(stream, t.train_queries * 20):
            if item.prompt not in seen:
                seen.add(item.prompt)
                items.append(item)
            if len(items) == t.train_queries:
                break
    else:
        pool = [i for name in t.families for i in _load(name, t.train_split, recipe.seed) if i.prompt not in held]
        items = pool[: t.train_queries]
    if not items:
        raise RecipeError(recipe.name, "tasks", f"the training split ({t.train_split}) of {', '.join(t.families)} has no items")
    return items


def _load(name: str, split: str, seed: int) -> list[TaskItem]:
    from swarm.tasks.loaders import load

    return load(name, split=split, seed=seed)


def to_json(item: TaskItem) -> dict[str, Any]:
    return dataclasses.asdict(item)


def from_json(row: dict[str, Any]) -> TaskItem:
    return TaskItem(**row)
