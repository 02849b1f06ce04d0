"""The learned routers on crafted labels over real all-MiniLM-L6-v2 embeddings (no swarm needed)."""

from __future__ import annotations

import random

import pytest

from swarm.eval.baselines import FORCRouter, KNNRouter, MFRouter
from swarm.eval.data import held_out_items, training_items


@pytest.mark.parametrize("router", [FORCRouter, KNNRouter, MFRouter], ids=["forc", "knn", "mf"])
def test_a_two_agent_pool_sends_the_hard_queries_to_the_dear_agent(router):
    """The cheap agent is right on difficulty 1 only, the dear one nearly always: at alpha 0.5 a
    router must send most harder queries to the dear agent. (FORC's MLP with sklearn's early
    stopping stopped after a few iterations here and sent every query to the cheap agent.)"""
    rng = random.Random(0)
    train, test = training_items(300), held_out_items(5)
    labels = {i.id: {"cheap": i.difficulty == 1, "dear": rng.random() > 0.03} for i in train}
    costs = {"cheap": 0.1, "dear": 0.9}
    chosen = router().fit(train, labels, list(costs)).choose(test, 0.5, costs)
    hard = [c for i, c in zip(test, chosen, strict=True) if i.difficulty > 1]
    assert hard.count("dear") >= 0.8 * len(hard)


@pytest.mark.parametrize("rare", [1, 4], ids=["one-right", "four-right"])
def test_frugalgpt_scorer_fits_lopsided_labels(rare):
    """An agent right on only `rare` of 120 training items (fewer than the 5 folds of its
    cross-validation) still gets a scorer, with no warning (warnings are errors here); a fresh
    ladder once left tb-xs right on 4 items and the fit died on sklearn's n_splits warning."""
    from swarm.eval.baselines import FrugalGPT

    train = training_items(120)[:120]
    right = {i.id for i in train[:rare]}
    labels = {i.id: {"cheap": i.id in right, "dear": True} for i in train}
    answers = {"cheap": {i.id: "The answer is: 1" for i in train}}
    frugal = FrugalGPT().fit(train, answers, labels, {"cheap": 0.1, "dear": 0.9})
    scores = frugal.score("cheap", train[:3], ["The answer is: 1"] * 3)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()
    assert frugal.thresholds_for(0.5)["cheap"] > 0.0  # it does not accept everything from a mostly-wrong agent
