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


@pytest.fixture
def stand_in_training(quick_ladder, tmp_path):
    """A `swarm train` output directory whose models are the untrained rungs (copied, with a model
    card): a stand-in that exercises the self-aware swarm's plumbing with real models at no
    training cost. (Untrained, they never say "I don't know!": the cheapest answers everything.)"""
    import shutil

    from swarm.testbed.models import testbed_model_dir

    root = tmp_path / "trained"
    for agent in ("tb-xs", "tb-s", "tb-m"):
        model = root / agent / "model"
        shutil.copytree(testbed_model_dir(f"testbed:quick/{agent}"), model)
        (model / "training.json").write_text(json.dumps({"recipe": {"name": agent, "model": f"testbed:quick/{agent}",
                                                                    "scenarios": [0.2, 0.5, 0.8]}}))
    return root


def test_behaviour_reports_routing_answer_rates_and_easy_hard_cost_per_alpha(ray_cluster, stand_in_training, tmp_path):
    paths = run_experiment("behaviour", tmp_path / "beh", Settings(per_cell=1, trained=stand_in_training))
    assert [p.name for p in paths] == ["behaviour.json", "behaviour.md", "behaviour_routing.png", "behaviour_answer_rate.png",
                                       "behaviour_easy_hard.png"]
    summary = json.loads(paths[0].read_text())
    assert list(summary["methods"]) == ["oracle", "largest", "swarm", "swarm-trained"]
    assert not (tmp_path / "beh" / "records" / "train").exists()  # no learned method: no training labels collected
    for method in ("swarm", "swarm-trained"):
        for a in ("0.2", "0.5", "0.8"):
            row = summary["methods"][method][a]
            assert sum(row["routing"].values()) == pytest.approx(1.0) and row["n"] == 16
            assert row["easy_hard"]["easy"]["n"] + row["easy_hard"]["hard"]["n"] == 16
    answered = summary["methods"]["swarm"]
    assert all(answered[a]["answer_rate"].get("tb-l", 1.0) == 1.0 for a in answered)  # the terminal agent always answers
    # the confidence swarm passes more queries on when accuracy weighs more (alpha 0.2) than when cost does (0.8)
    assert answered["0.2"]["routing"]["tb-xs"] <= answered["0.8"]["routing"]["tb-xs"]
    assert summary["methods"]["swarm-trained"]["0.5"]["routing"]["tb-xs"] == 1.0  # the stand-ins never reject
    text = paths[1].read_text()
    assert "## Answer rate" in text and "| swarm-trained | 0.8 |" in text and "## Easy" in text


def test_live_and_modularity_run_the_self_aware_swarm_when_given_trained_models(ray_cluster, stand_in_training, tmp_path):
    live = json.loads(run_experiment("live", tmp_path / "live", Settings(duration_s=6, rate=1.0, trained=stand_in_training))[0].read_text())
    assert live["lost"] == 0 and str(stand_in_training) in live["setup"]
    methods = {json.loads(line)["method"] for line in (tmp_path / "live" / "records" / "live.jsonl").read_text().splitlines()}
    assert methods == {"swarm-trained-live"}
    mod = json.loads(run_experiment("modularity", tmp_path / "mod", Settings(per_cell=1, train=16, trained=stand_in_training))[0].read_text())
    assert "swarm-trained" in mod["phases"]["added"]["methods"] and "swarm" not in mod["phases"]["added"]["methods"]
    assert mod["phases"]["before"]["methods"]["swarm-trained"]["0.5"]["routing"]["tb-xs"] == 1.0
