"""Several agents' training recipes at once: each its own Ray task on a cluster (they share nothing)."""

from __future__ import annotations

from swarm.cluster.connect import run_tasks
from swarm.training.pipeline import TrainResult, train, train_json
from swarm.training.recipe import as_recipe


def train_many(recipes: list, address: str | None = None) -> list[TrainResult]:
    """Several agents' recipes, each on its own: as Ray tasks on a cluster when `address` is given,
    else one after another in this process."""
    loaded = [as_recipe(r) for r in recipes]
    if address is None:
        return [train(r) for r in loaded]
    return run_tasks(train_json, [r.model_dump(mode="json") for r in loaded], [r.threads for r in loaded], address)
