"""The live, modularity and latency experiments on a real local Ray cluster with the quick ladder,
at tiny sizes (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import json

import pytest

from swarm.eval.experiments import Settings, run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]


def test_live_loses_no_query_while_agents_join_leave_and_die(ray_cluster, quick_ladder, tmp_path):
    paths = run_experiment("live", tmp_path / "live", Settings(duration_s=15, rate=1.0))
    assert [p.name for p in paths] == ["live.json", "live.md", "live_timeline.png"]
    summary = json.loads(paths[0].read_text())
    assert summary["n"] == 15 and summary["lost"] == 0
    assert [(e["kind"], e["agent"], e["error"]) for e in summary["events"]] == [("join", "tb-m-2", ""), ("leave", "tb-s", ""), ("kill", "tb-m", "")]
    assert sum(w["n"] for w in summary["windows"]) == 15 and len(summary["windows"]) == 9
    assert "0 lost" in paths[1].read_text() and paths[2].stat().st_size > 10_000
    assert len((tmp_path / "live" / "records" / "live.jsonl").read_text().splitlines()) == 15
