"""Testbed models as model references: ``testbed:<ladder>/<rung>`` (e.g. ``testbed:quick/tb-s``)
names a rung of the quick or full ladder (seed 0), built into the cache on first use.

The cache lies in ``$SWARM_CACHE_DIR/testbed/<ladder>``, default ``~/.cache/swarm/testbed/<ladder>``;
a file lock makes agents (or launches) that need the same ladder at once build it once.
`swarm.launch` builds what a topology needs before it starts any agent, so the build's progress
shows on the launching terminal and no agent waits on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from swarm.offline import cache_dir, file_lock

TESTBED_PREFIX = "testbed:"
LADDERS = ("quick", "full")


def parse_ref(ref: str) -> tuple[str, str]:
    """('quick', 'tb-s') from 'testbed:quick/tb-s'; a ValueError that names what is wrong otherwise."""
    from swarm.testbed.ladder import FULL_RUNGS, QUICK_RUNGS

    body = ref.removeprefix(TESTBED_PREFIX)
    ladder, _, rung = body.partition("/")
    if ladder not in LADDERS:
        raise ValueError(f"unknown testbed ladder {ladder!r} in {ref!r} (expected 'testbed:quick/<rung>' or 'testbed:full/<rung>')")
    names = [r.name for r in (QUICK_RUNGS if ladder == "quick" else FULL_RUNGS)]
    if rung not in names:
        raise ValueError(f"unknown testbed rung {rung!r} in {ref!r} (the {ladder} ladder has: {', '.join(names)})")
    return ladder, rung


def ladder_dir(ladder: str) -> Path:
    return cache_dir() / "testbed" / ladder


def build(ladder: str):
    """The ladder's report, building it first unless cached (serialised across processes)."""
    from swarm.testbed.ladder import build_ladder

    out = ladder_dir(ladder)
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{ladder}.lock"):
        return build_ladder(out, quick=ladder == "quick", seed=0)


def testbed_model_dir(ref: str) -> Path:
    """The model directory a 'testbed:' reference names, building its ladder first if needed."""
    ladder, rung = parse_ref(ref)
    report = build(ladder)
    return next(Path(m.path) for m in report.models if m.name == rung)


def testbed_probe_path(ref: str) -> Path:
    """Where the probe of a 'testbed:' rung lives once fitted (`swarm.training.testbed_probes` fits it)."""
    ladder, rung = parse_ref(ref)
    return ladder_dir(ladder) / "probes" / rung / "probe"


def prepare(models: Iterable[str]) -> None:
    """Build every ladder that these model references need (the others pass untouched)."""
    for ladder in sorted({parse_ref(m)[0] for m in models if m.startswith(TESTBED_PREFIX)}):
        build(ladder)
