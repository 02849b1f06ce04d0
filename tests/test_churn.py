"""The churn soak (benchmarks/churn.py), short: 8 agents on real Ray, queries flowing while agents
join, leave and crash every 2 s. Every query is answered, none twice, and crashes are routed around."""

from __future__ import annotations

import pytest

from benchmarks.churn import soak

pytestmark = pytest.mark.ray


def test_churn_loses_nothing_and_runs_nothing_twice(ray_cluster):
    r = soak(agents=8, duration_s=16, every_s=2.0, in_flight=100, seed=1, warmup_s=3, interval=1.0)
    assert r["asked"] >= 1000 and sum(r["events"].values()) >= 6 and r["events"]["crash"] >= 1
    assert (r["lost"], r["errors"], r["duplicates"]) == (0, 0, 0), r["error_kinds"]
    assert r["crashes_not_rerouted"] == 0
