"""The evaluation harness and baselines on a real swarm: the quick testbed ladder launched on a
local Ray cluster, every query a real generation, graded by swarm.tasks.verify."""

from __future__ import annotations

import json

import pytest

from swarm import launch
from swarm.errors import SwarmError
from swarm.eval import metrics
from swarm.eval.baselines import AutoMix, FORCRouter, FrugalGPT, KNNRouter, Largest, MFRouter, Oracle, Random, Smallest
from swarm.eval.data import held_out_items, training_items
from swarm.eval.experiments import Settings, run_experiment
from swarm.eval.harness import Forced, Routed, SelfRouting, agent_costs, collect_labels, run_method
from swarm.tasks.verify import verify

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(600)]
LADDER = ["tb-xs", "tb-s", "tb-m", "tb-l"]


@pytest.fixture(scope="module")
def swarm(ray_cluster, quick_ladder):
    s = launch("topologies/quickstart.yaml", name="eval-tests")
    yield s
    s.shutdown()


@pytest.fixture(scope="module")
def test_set():
    return held_out_items(1)  # one per family x difficulty: 16 items


@pytest.fixture(scope="module")
def train_labels(swarm, tmp_path_factory):
    train = training_items(64)
    labels, per_agent = collect_labels(swarm, train, tmp_path_factory.mktemp("train"))
    return train, labels, per_agent


def test_must_answer_at_a_named_entry_answers_there_without_forwarding(swarm, test_set):
    for agent in ("tb-xs", "tb-l"):
        answers = swarm.ask_many([i.prompt for i in test_set], alpha=0.5, entry=agent, must_answer=True)
        assert {a.agent for a in answers} == {agent}
        assert all(a.hops == 0 and [h.decision for h in a.trace] == ["forced"] for a in answers)
    # without must_answer, the named entry is where routing starts: tb-l is the end of the cascade
    assert {a.agent for a in swarm.ask_many([i.prompt for i in test_set], entry="tb-l")} == {"tb-l"}


def test_an_unknown_entry_is_a_clear_error(swarm):
    with pytest.raises(SwarmError, match="no live agent named 'tb-zz'"):
        swarm.ask_many(["1+1="], entry="tb-zz", must_answer=True)


def test_run_method_records_graded_answers_and_a_rerun_only_runs_new_items(swarm, test_set, tmp_path):
    first = run_method(Forced("tb-m"), swarm, test_set[:6], 0.5, tmp_path)
    assert [r.query_id for r in first] == [i.id for i in test_set[:6]]
    assert all(r.agent == "tb-m" and r.cost == pytest.approx(0.535) and r.calls == 1 and r.tokens > 0 for r in first)
    assert [r.correct for r in first] == [verify(i, r.answer) for i, r in zip(test_set, first)]
    path = tmp_path / "forced-tb-m@0.5.jsonl"
    more = run_method(Forced("tb-m"), swarm, test_set[:10], 0.5, tmp_path)
    assert more[:6] == first  # read back, not run again
    assert len(path.read_text().splitlines()) == 10


def test_labels_and_the_untrained_routers(swarm, test_set, tmp_path):
    labels, per_agent = collect_labels(swarm, test_set, tmp_path)
    assert set(labels) == {i.id for i in test_set} and all(set(row) == set(LADDER) for row in labels.values())
    oracle = run_method(Routed("oracle", Oracle(labels)), swarm, test_set, 0.5, tmp_path)
    for r in oracle:
        row = labels[r.query_id]
        assert r.agent == next((a for a in LADDER if row[a]), "tb-xs")
        assert r.correct == any(row.values())  # the models decode greedily: the same answer again
    assert {r.agent for r in run_method(Routed("smallest", Smallest()), swarm, test_set, 0.5, tmp_path)} == {"tb-xs"}
    assert {r.agent for r in run_method(Routed("largest", Largest()), swarm, test_set, 0.5, tmp_path)} == {"tb-l"}
    rnd = Random(0).choose(test_set, 0.5, agent_costs(swarm))
    assert rnd == Random(0).choose(test_set, 0.8, agent_costs(swarm)) and len(set(rnd)) > 1
    assert metrics.accuracy(oracle) >= max(metrics.accuracy(rs) for rs in per_agent.values())


@pytest.mark.parametrize("router", [KNNRouter(k=8), FORCRouter(), MFRouter(epochs=100)], ids=["knn", "forc", "mf"])
def test_learned_routers_train_on_training_labels_and_trade_accuracy_for_cost(swarm, test_set, train_labels, router, tmp_path):
    train, labels, _ = train_labels
    router.fit(train, labels, LADDER)
    costs = agent_costs(swarm)
    p = router.predict(test_set)
    assert p.shape == (len(test_set), 4) and ((p >= 0) & (p <= 1)).all()
    cheap, dear = router.choose(test_set, 0.8, costs), router.choose(test_set, 0.2, costs)
    assert all(costs[c] <= costs[d] for c, d in zip(cheap, dear))  # a higher alpha never picks a dearer agent
    records = run_method(Routed("learned", router), swarm, test_set, 0.8, tmp_path)
    assert [r.agent for r in records] == cheap


def test_a_router_refuses_a_pool_it_was_not_trained_on(train_labels, test_set):
    train, labels, _ = train_labels
    router = KNNRouter(k=4).fit(train, labels, LADDER)
    with pytest.raises(ValueError, match="retrain"):
        router.choose(test_set, 0.5, {"tb-xs": 0.1, "tb-l": 0.9})


def test_cascades_call_agents_cheapest_first_and_count_every_call(swarm, test_set, train_labels, tmp_path):
    train, labels, per_agent = train_labels
    answers = {a: {r.query_id: r.answer for r in rs} for a, rs in per_agent.items()}
    frugal = FrugalGPT().fit(train, answers, labels, agent_costs(swarm))
    assert set(frugal.thresholds_for(0.5)) == {"tb-xs", "tb-s", "tb-m"}
    for method in (frugal, AutoMix()):
        for r in run_method(method, swarm, test_set, 0.5, tmp_path):
            called = [s.agent for s in r.steps if s.decision != "verify"]
            assert called == LADDER[: len(called)] and called[-1] == r.agent
            assert [s.decision for s in r.steps if s.decision != "verify"] == ["reject"] * (len(called) - 1) + ["forced" if r.agent == "tb-l" else "answer"]
            assert r.calls == len(r.steps) and r.model_seconds == pytest.approx(sum(s.seconds for s in r.steps))
            if isinstance(method, AutoMix):  # every answer but the last agent's was checked by its own agent
                assert [s.agent for s in r.steps if s.decision == "verify"] == [a for a in called if a != "tb-l"]


def test_self_routing_records_the_swarms_path(swarm, test_set, tmp_path):
    records = run_method(SelfRouting(), swarm, test_set, 0.5, tmp_path)
    for r in records:
        decided = [s for s in r.steps if s.decision in ("answer", "reject", "forced")]
        assert decided[-1].agent == r.agent and r.hops == len(decided) - 1 == r.calls - 1
        assert all(s.decision == "reject" for s in decided[:-1])


def test_main_experiment_writes_json_table_and_frontier(ray_cluster, quick_ladder, tmp_path):
    out = tmp_path / "results"
    s = Settings(per_cell=1, train=48, alphas=(0.2, 0.8), methods=("swarm", "knn"))
    paths = run_experiment("main", out, s)
    assert [p.name for p in paths] == ["main.json", "main.md", "main_frontier.png", "main_routing.png"]
    summary = json.loads(paths[0].read_text())
    assert set(summary["methods"]) == {"oracle", "largest", "swarm", "knn"}
    assert summary["methods"]["oracle"]["0.2"]["oracle_share"] == pytest.approx(1.0)
    assert summary["topology"]["name"] == "quickstart" and summary["settings"]["train"] == 48
    assert "| swarm |" in paths[1].read_text() and paths[2].stat().st_size > 10_000 and paths[3].stat().st_size > 10_000
    with pytest.raises(SwarmError, match="exists"):
        run_experiment("main", out, s)

