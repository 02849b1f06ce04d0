"""Evaluation metrics on crafted records (no swarm needed), the record store, and the train/test split."""

from __future__ import annotations

import json
import math

import pytest

from swarm.eval import metrics
from swarm.eval.data import held_out_items, training_items
from swarm.eval.records import Record, RecordStore, Step
from swarm.tasks.testbed_families import FAMILIES, held_out

AGENTS = ["s", "m", "l", "xl"]  # cheapest first
COSTS = {"s": 0.1, "m": 0.3, "l": 0.6, "xl": 0.9}


def rec(qid, agent, correct, steps=(), latency=1.0, hops=0, calls=1, error=""):
    steps = [Step(a, d, sec, tok) for a, d, sec, tok in steps]
    return Record(qid, "m", 0.5, "testbed/add", 1, agent, COSTS.get(agent, 0.0), correct, latency, hops, calls,
                  sum(s.tokens for s in steps), sum(s.seconds for s in steps), steps, error=error)


# q1: s answers right at once. q2: s rejects, m answers wrongly. q3: s and m reject, l answers right.
# q4: everyone rejects, xl is forced and right. q5: failed (no agent could answer).
RECORDS = [
    rec("q1", "s", True, [("s", "answer", 1.0, 10)], latency=1.0, hops=0, calls=1),
    rec("q2", "m", False, [("s", "reject", 0.5, 5), ("m", "answer", 2.0, 10)], latency=2.0, hops=1, calls=2),
    rec("q3", "l", True, [("s", "reject", 0.5, 5), ("m", "reject", 1.0, 5), ("l", "answer", 3.0, 10)], latency=3.0, hops=2, calls=3),
    rec("q4", "xl", True, [("s", "reject", 0.5, 5), ("m", "reject", 1.0, 5), ("l", "reject", 1.5, 5), ("xl", "forced", 4.0, 10)],
        latency=4.0, hops=3, calls=4),
    rec("q5", "", False, [("s", "reject", 0.5, 5), ("m", "error", 0.0, 0)], latency=5.0, hops=1, calls=2, error="no_capable_agent"),
]
# Forced-answer correctness of every agent on every query.
LABELS = {
    "q1": {"s": True, "m": True, "l": True, "xl": True},
    "q2": {"s": False, "m": True, "l": True, "xl": True},  # m answered wrongly here, but its forced answer is right: label wins for F1
    "q3": {"s": False, "m": False, "l": True, "xl": True},
    "q4": {"s": False, "m": False, "l": False, "xl": True},
    "q5": {"s": True, "m": False, "l": False, "xl": False},
}


def test_accuracy_counts_failed_queries_as_wrong():
    assert metrics.accuracy(RECORDS) == pytest.approx(3 / 5)


def test_paper_cost_is_the_answering_agents_cost_and_rejections_are_free():
    assert metrics.paper_cost(RECORDS) == pytest.approx((0.1 + 0.3 + 0.6 + 0.9 + 0.0) / 5)


def test_utility_under_both_cost_definitions():
    acc, cost = 3 / 5, (0.1 + 0.3 + 0.6 + 0.9) / 5
    assert metrics.utility(RECORDS, 0.5) == pytest.approx(acc - 0.5 * cost)
    # measured: mean model-seconds (1 + 2.5 + 4.5 + 7 + 0.5) / 5 = 3.1 against a reference of 4 s that costs 0.9
    measured = metrics.measured_cost(RECORDS, reference_s=4.0, reference_cost=0.9)
    assert measured == pytest.approx(3.1 / 4.0 * 0.9)
    assert metrics.utility(RECORDS, 0.8, measured) == pytest.approx(acc - 0.8 * measured)
    assert metrics.mean_tokens(RECORDS) == pytest.approx((10 + 15 + 20 + 25 + 5) / 5)
    with pytest.raises(ValueError, match="reference_s"):
        metrics.measured_cost(RECORDS, 0.0)


def test_latency_quantiles_overall_and_by_hop_count():
    lat = metrics.latency(RECORDS)
    assert lat["p50_s"] == pytest.approx(3.0)
    assert lat["p95_s"] == pytest.approx(4.8)  # numpy's linear interpolation between 4 and 5
    assert lat["by_hops"][1] == {"n": 2, "p50_s": pytest.approx(3.5), "p95_s": pytest.approx(4.85)}
    assert lat["by_hops"][0]["n"] == 1 and lat["by_hops"][3]["p50_s"] == 4.0
    assert metrics.quantile([], 0.5) == 0.0


def test_calls_routing_and_answer_rates():
    assert metrics.calls_per_query(RECORDS) == pytest.approx(12 / 5)
    assert metrics.routing_distribution(RECORDS, AGENTS) == {"s": 0.2, "m": 0.2, "l": 0.2, "xl": 0.2, "": 0.2}
    # s decided on 5 queries and answered 1; m decided on 3 (its error on q5 is no decision), answered 1; xl was forced once.
    assert metrics.answer_rates(RECORDS) == {"s": pytest.approx(1 / 5), "m": pytest.approx(1 / 3), "l": pytest.approx(1 / 2), "xl": 1.0}


def test_easy_means_solvable_by_the_cheaper_half_of_the_ladder():
    assert metrics.easy_ids(LABELS, AGENTS) == {"q1", "q2", "q5"}
    split = metrics.easy_hard(RECORDS, 0.5, LABELS, AGENTS)
    assert split["easy"]["n"] == 3 and split["hard"]["n"] == 2
    assert split["easy"]["accuracy"] == pytest.approx(1 / 3)
    assert split["hard"]["accuracy"] == 1.0
    assert split["hard"]["cost"] == pytest.approx((0.6 + 0.9) / 2)


def test_self_assessment_f1_scores_free_decisions_against_forced_correctness():
    f1 = metrics.self_assessment_f1(RECORDS, LABELS)
    # s: answered q1 (can: TP), rejected q2-q4 (cannot: TN), rejected q5 (can: FN) -> F1 = 2/(2+0+1)
    assert f1["agents"]["s"] == {"n": 5, "f1": pytest.approx(2 / 3)}
    # m: answered q2 (can: TP), rejected q3, q4 (cannot: TN) -> 1.0; its error on q5 is no decision
    assert f1["agents"]["m"] == {"n": 3, "f1": 1.0}
    # l: answered q3 (TP), rejected q4 (TN); xl was only forced, which is no decision
    assert f1["agents"]["l"]["f1"] == 1.0 and "xl" not in f1["agents"]
    assert f1["pooled"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))


def test_share_of_oracle_utility_and_the_summary():
    assert metrics.oracle_share(0.4, 0.8) == 0.5
    assert math.isnan(metrics.oracle_share(0.4, 0.0))
    s = metrics.summarize(RECORDS, 0.5, AGENTS, LABELS, reference_s=4.0, oracle_utility=0.8)
    assert s["n"] == 5 and s["failed"] == 1
    assert s["oracle_share"] == pytest.approx(s["utility"] / 0.8)
    assert {"measured_cost", "measured_utility", "easy_hard", "self_assessment", "latency", "routing", "answer_rate"} <= set(s)
    json.dumps(s)  # JSON-ready


def test_record_store_appends_and_a_reopened_store_knows_what_is_done(tmp_path):
    path = tmp_path / "records" / "m@0.5.jsonl"
    store = RecordStore(path)
    store.add(RECORDS[:2])
    again = RecordStore(path)
    assert again.done("q1") and again.done("q2") and not again.done("q3")
    assert again.get(["q2", "q1", "q9"]) == [RECORDS[1], RECORDS[0]]  # round trip, steps included


def test_train_and_test_items_never_share_a_question():
    test = held_out_items(3)
    assert len(test) == 4 * 4 * 3  # in-domain families x difficulties x per cell
    train = training_items(500)
    assert len(train) == 500 and len({i.prompt for i in train}) == 500
    held = {i.prompt for i in held_out(0, 200, FAMILIES)}
    assert not held & {i.prompt for i in train}
    assert {i.domain for i in train} == {i.domain for i in test} == {"testbed/add", "testbed/sub", "testbed/sum", "testbed/max"}
    with pytest.raises(ValueError, match="per_cell"):
        held_out_items(0)


def test_compute_cost_weighs_every_calls_tokens_by_its_agents_flops():
    fpt = {"s": 1.0, "m": 2.0, "l": 4.0, "xl": 8.0}
    # q1: 10 x 1; q2: 5 x 1 + 10 x 2; q3: 5 + 10 + 40; q4: 5 + 10 + 20 + 80; q5: 5 -> mean 210 / 5 = 42
    assert metrics.mean_flops(RECORDS, fpt) == pytest.approx(42.0)
    assert metrics.compute_cost(RECORDS, fpt, reference_flops=80.0) == pytest.approx(42 / 80 * 0.9)
    s = metrics.summarize(RECORDS, 0.5, AGENTS, flops_per_token=fpt, reference_flops=80.0)
    assert s["compute_utility"] == pytest.approx(3 / 5 - 0.5 * 42 / 80 * 0.9)
    with pytest.raises(ValueError, match="reference_flops"):
        metrics.compute_cost(RECORDS, fpt, 0.0)


def test_paired_gap_and_its_bootstrap_interval():
    cheap = [rec(f"q{i}", "s", i % 2 == 0) for i in range(40)]  # half right at the cheapest agent
    same = [rec(f"q{i}", "s", i % 2 == 0) for i in range(40)]
    g = metrics.paired_gap(cheap, same, 0.5)
    assert g == {"gap": 0.0, "ci95": [0.0, 0.0]}
    # one query in four made right by a dearer agent: the gap is exact, and the interval holds it and excludes 0
    better = [rec(f"q{i}", "l", True) if i % 4 == 1 else rec(f"q{i}", "s", i % 2 == 0) for i in range(40)]
    g = metrics.paired_gap(better, cheap, 0.5)
    step = 1 - 0.5 * (COSTS["l"] - COSTS["s"])
    assert g["gap"] == pytest.approx(step / 4)
    assert 0 < g["ci95"][0] < g["gap"] < g["ci95"][1]
    assert metrics.paired_gap(better, cheap, 0.5) == g  # seeded
    with pytest.raises(ValueError, match="same queries"):
        metrics.paired_gap(better[:-1], cheap, 0.5)
