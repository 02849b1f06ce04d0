"""Output directories a command writes into and may delete: only ones it made.

A command marks a directory it makes with a marker file (`swarm eval`: `.swarm-results`; `swarm
train` and `swarm probe`: `recipe.json`) and writes into, continues or deletes only an empty
directory or one that holds its marker. The filesystem root, the home directory, the current
directory and any directory above one of them are refused outright.
"""

from __future__ import annotations

from pathlib import Path

from swarm.errors import SwarmError


class OutputDirError(SwarmError, ValueError):
    """An output directory a command must not write into (a ValueError too, so a pydantic
    validator that raises it reports it as the field's problem)."""


def check_output_dir(path: Path, marker: str, what: str = "output directory") -> Path:
    """`path` made absolute (symbolic links resolved; `~` is not expanded here, as the caller writes
    where `path` says), once it is known safe to write into and to delete parts of: not a precious
    directory, not a file, and empty or holding `marker`."""
    try:
        return _checked(Path(path).resolve(), marker, what)
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop, a directory we may not read
        raise OutputDirError(f"{what} {str(path)[:80]!r} cannot be used: {getattr(e, 'strerror', None) or e}") from None


def _checked(path: Path, marker: str, what: str) -> Path:
    precious = _precious(path)
    if precious:
        raise OutputDirError(f"{what} {path} is {precious}; choose a directory of its own")
    if path.exists() and not path.is_dir():
        raise OutputDirError(f"{what} {path} exists and is not a directory")
    if path.is_dir() and not (path / marker).is_file() and any(path.iterdir()):
        raise OutputDirError(f"{what} {path} holds files swarm did not write there (it has no {marker}); "
                             "choose another directory, or empty it yourself")
    return path


def _precious(path: Path) -> str | None:
    if path.parent == path:
        return "the filesystem root"
    for name, where in (("the home directory", Path.home), ("the current directory", Path.cwd)):
        try:
            place = where().resolve()
        except (OSError, RuntimeError):  # no home directory known, or the current one deleted
            continue
        if path == place:
            return name
        if path in place.parents:
            return f"above {name} ({place})"
    return None
