"""Probes of the testbed's rungs as probe references: a `probe` policy's ``path: testbed:quick/tb-s``
names the probe of that rung (`swarm.testbed.models.testbed_probe_path`), fitted into the cache on
first use (``<ladder cache>/probes/<rung>/probe``,
with its calibration report beside it) by `swarm.training.probe.train_probe` with `SETTINGS`: the
probe-relevant settings of the committed recipes (`recipes/tb-*.yaml`), so `swarm probe
recipes/tb-s.yaml` fits the same probe (tests/test_assess.py holds them equal).

`swarm.launch` fits what a topology needs before any agent starts (like the ladder itself), so the
progress shows on the launching terminal; a file lock makes concurrent launches fit each probe once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from swarm.offline import file_lock
from swarm.testbed.models import TESTBED_PREFIX, build, ladder_dir, parse_ref, testbed_probe_path

# What a probe's fit depends on (the recipes' SFT and RL sections do not matter to it).
SETTINGS = {
    "seed": 0,
    "tasks": {"source": "testbed", "families": ["add", "sub", "sum", "max"], "train_queries": 1500, "eval_per_cell": 25},
    "competence": {"samples": 8, "temperature": 0.5, "max_new_tokens": 80, "batch_size": 32},
}


def probe_recipe(ref: str) -> dict:
    ladder, rung = parse_ref(ref)
    return {"name": rung, "model": f"{TESTBED_PREFIX}{ladder}/{rung}", "output_dir": str(ladder_dir(ladder) / "probes" / rung),
            "threads": 1, **SETTINGS}


def testbed_probe_dir(ref: str) -> Path:
    """The probe directory a 'testbed:' reference names, fitting it (and building its ladder) first if needed."""
    from swarm.training.probe import train_probe

    ladder, rung = parse_ref(ref)
    build(ladder)
    out = testbed_probe_path(ref)
    if (out / "probe.json").is_file():
        return out
    with file_lock(ladder_dir(ladder) / "probes" / f".{rung}.lock"):
        if not (out / "probe.json").is_file():
            print(f"fitting the probe of {ref} (once; cached in {out.parent}) ...", flush=True)
            train_probe(probe_recipe(ref))
    return out


def prepare_probes(paths: Iterable[str], regions=None) -> None:
    """Fit every testbed probe these probe paths name (the others pass untouched). Under a region map
    (`regions`, the topology's), every probe with its recipe beside it records its validation queries'
    regions under that map, so that its agent advertises a curve per region; one without says so and
    advertises one curve."""
    import structlog

    from swarm.errors import SwarmError
    from swarm.training.probe import record_regions

    paths = sorted(set(paths))
    for path in paths:
        if path.startswith(TESTBED_PREFIX):
            testbed_probe_dir(path)
    if regions is None:
        return
    for path in paths:
        if not path:
            continue
        directory = testbed_probe_path(path) if path.startswith(TESTBED_PREFIX) else Path(path)
        try:
            with file_lock(directory.parent / ".regions.lock"):
                if record_regions(directory, regions):
                    print(f"recorded the regions of {path}'s validation queries under the region map {regions.digest}", flush=True)
        except SwarmError as exc:
            structlog.get_logger("swarm.launch").warning("one value curve for every query", probe=path, reason=str(exc)[:300])
