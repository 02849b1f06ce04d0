"""Tasks: benchmark items, their verifiers, answer extraction and loaders.

An item is a `TaskItem`; `verify(item, response)` grades a free-form model response against
it. Loaders (swarm.tasks.loaders) return items with named, seed-deterministic splits.
"""

from swarm.tasks.base import Split, TaskItem

__all__ = ["Split", "TaskItem"]
