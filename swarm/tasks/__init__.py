"""Tasks: benchmark items, their verifiers, answer extraction and loaders.

An item is a `TaskItem`; `verify(item, response)` (or `grade`) checks a free-form model response
against it; `swarm.tasks.loaders.load(name, split=..., seed=...)` returns items with named,
seed-deterministic splits; `swarm.tasks.domains` says which families are in-domain (used for
training) and which are held out (out-of-domain tests).
"""

from swarm.tasks.answers import extract_answer
from swarm.tasks.base import Split, TaskItem
from swarm.tasks.verify import Grade, grade, verify

__all__ = ["Grade", "Split", "TaskItem", "extract_answer", "grade", "verify"]
