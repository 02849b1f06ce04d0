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


def test_modularity_runs_stale_and_retrained_routers_on_a_changed_pool(ray_cluster, quick_ladder, tmp_path):
    paths = run_experiment("modularity", tmp_path / "mod", Settings(per_cell=1, train=48))
    summary = json.loads(paths[0].read_text())
    assert list(summary["phases"]) == ["before", "removed", "added"]
    assert list(summary["phases"]["removed"]["agents"]) == ["tb-xs", "tb-l"]
    assert set(summary["phases"]["added"]["agents"]) == {"tb-xs", "tb-m-new", "tb-l"}
    assert all(v.startswith("refused") and "retrain" in v for v in summary["stale_refusals"].values())
    added = summary["phases"]["added"]["methods"]
    assert added["stale-knn"]["0.5"]["routing"]["tb-m-new"] == 0  # a stale router never sends to an agent it has not seen
    assert {"swarm", "oracle", "retrained-forc", "stale-routellm-mf"} <= set(added)
    assert all(m["0.5"]["failed"] == 0 and m["0.5"]["n"] == 16 for m in added.values())
    assert summary["retraining_cost"]["label_items"] == 48 and "| retrained-knn |" in paths[1].read_text()


def test_latency_reports_hops_and_the_cost_of_rejections(ray_cluster, quick_ladder, tmp_path):
    paths = run_experiment("latency", tmp_path / "lat", Settings(per_cell=1, alphas=(0.5,)))
    summary = json.loads(paths[0].read_text())
    row = summary["methods"]["swarm"]["0.5"]
    assert sum(x["n"] for x in row["latency"]["by_hops"].values()) == 16
    r = row["rejections"]
    assert r["compute_cost_all_calls"] >= r["compute_cost_answer_only"] and 0 <= r["reject_share_of_flops"] <= 1
    assert (r["rejections_per_query"] > 0) == (r["reject_tokens_per_query"] > 0)
    assert "Are rejections free?" in paths[1].read_text() and paths[2].stat().st_size > 5_000
