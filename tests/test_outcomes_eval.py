"""The main experiment replayed on an outcome matrix (swarm.eval.outcomes.experiment), on small
matrices these tests generate: queries whose embeddings the test builds (injected into the
embedding cache, so no encoder runs), a cheap model competent on one region of that space only,
a middling one and a dear one that is usually right."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest

from swarm.eval import embed as embed_mod
from swarm.eval.outcomes import OutcomeRow, write_outcomes
from swarm.eval.outcomes.experiment import Matrix, OutcomeSettings, run_methods, summarize
from swarm.eval.outcomes.run import run_outcome_experiment
from swarm.eval.outcomes.split import stratified_split

DIM = 16
PRICES = {"small": 0.0001, "mid": 0.001, "large": 0.01}


def synthetic(n: int = 400, seed: int = 0) -> tuple[list[OutcomeRow], dict[str, np.ndarray]]:
    """Rows and the embedding of every text the methods embed (queries, and 'query answer' for FrugalGPT).
    small is right exactly where the first coordinate is positive (5% noise), mid 60% anywhere, large 92%."""
    rng = np.random.default_rng(seed)
    rows, vectors = [], {}
    for i in range(n):
        x = rng.normal(size=DIM)
        x /= np.linalg.norm(x)
        right = {"small": (x[0] > 0) != (rng.random() < 0.05), "mid": rng.random() < 0.6, "large": rng.random() < 0.92}
        query = f"question {i}"
        models = {m: {"correct": float(right[m]), "answer": "yes" if right[m] else "no", "cost": PRICES[m] * (1 + 0.1 * rng.random())}
                  for m in PRICES}
        rows.append(OutcomeRow.model_validate({"id": f"q{i}", "query": query, "domain": "ab"[i % 2], "models": models}))
        vectors[query] = x
        for m, o in models.items():
            vectors[f"{query} {o['answer']}"] = x
    return rows, vectors


@pytest.fixture
def matrix():
    rows, vectors = synthetic()
    saved = dict(embed_mod._cache)
    embed_mod.remember(list(vectors), np.stack(list(vectors.values())))
    yield rows, vectors
    embed_mod._cache.clear()
    embed_mod._cache.update(saved)


def generated(n: int, seed: int, prices: dict[str, float], draw) -> tuple[list[OutcomeRow], dict[str, np.ndarray]]:
    """`n` rows whose query embedding and per-model correctness `draw(i, rng)` returns, as (x, right, domain)."""
    rng = np.random.default_rng(seed)
    rows, vectors = [], {}
    for i in range(n):
        x, right, domain = draw(i, rng)
        models = {m: {"correct": float(right[m]), "answer": "y", "cost": prices[m]} for m in prices}
        rows.append(OutcomeRow.model_validate({"id": f"q{i}", "query": f"question {i}", "domain": domain, "models": models}))
        vectors[f"question {i}"] = x
    return rows, vectors


@contextlib.contextmanager
def embedded(vectors: dict[str, np.ndarray]):
    """These texts' embeddings are `vectors` inside the block (no encoder runs)."""
    saved = dict(embed_mod._cache)
    embed_mod.remember(list(vectors), np.stack(list(vectors.values())))
    try:
        yield
    finally:
        embed_mod._cache.clear()
        embed_mod._cache.update(saved)


def unit(rng) -> np.ndarray:
    x = rng.normal(size=DIM)
    return x / np.linalg.norm(x)

def _run(rows, tmp_path, seed=0, methods=()):
    models = ["small", "mid", "large"]
    train, test = stratified_split(rows, 150, seed)
    recs, learned = run_methods(Matrix(train, models), Matrix(test, models), (0.2, 0.5, 0.8), seed, tmp_path / "cache", methods)
    return recs, summarize("main", "t", "s", recs, learned, Matrix(test, models), (0.2, 0.5, 0.8), 0.0)


def test_learned_probe_beats_the_cheapest_always_answering(matrix, tmp_path):
    rows, _ = matrix
    _, summary = _run(rows, tmp_path, methods=("swarm-probe", "smallest", "knn"))
    m = summary["methods"]
    for a in ("0.2", "0.5", "0.8"):
        assert m["swarm-probe"][a]["utility"] > m["smallest"][a]["utility"] + 0.05
    # the cheap model answers in its region: it takes a real share of the queries, and is mostly right there
    probe = m["swarm-probe"]["0.8"]
    assert 0.25 < probe["routing"]["small"] < 0.7
    assert probe["self_assessment"]["agents"]["small"]["f1"] > 0.8


def test_the_probe_router_sends_each_query_where_the_agents_own_probes_say_it_is_worth_most(matrix, tmp_path):
    """small is right exactly where the first coordinate is positive, mid on 60% anywhere, large on 92%:
    read centrally, the agents' own probes send the positive half to small and the rest to large (mid,
    never worth its cost, gets nothing), and the diagnostic is no router the swarm is measured against."""
    rows, vectors = matrix
    recs, summary = _run(rows, tmp_path, methods=("probe-router", "knn"))
    assert "probe-router" in summary["methods"] and "probe-router" not in summary["routers"]
    routed = recs["probe-router"][0.5]
    positive = [vectors[r.query][0] > 0 for r in Matrix(stratified_split(rows, 150, 0)[1], ["small"]).rows]
    to_small = [rec.agent == "small" for rec in routed]
    assert sum(a == b for a, b in zip(to_small, positive, strict=True)) >= 0.9 * len(routed)
    assert {rec.agent for rec in routed} <= {"small", "large"} and all(len(rec.steps) == 1 for rec in routed)


def test_summary_keys_routers_oracle_and_ranges(matrix, tmp_path):
    rows, _ = matrix
    _, summary = _run(rows, tmp_path)
    assert summary["recommended"] == "swarm-skip"
    assert set(summary["routers"]) == {"knn", "forc", "routellm-mf", "frugalgpt"}
    assert "automix" in summary["left_out"] and "automix" not in summary["methods"]
    for a, g in summary["versus_best_router"].items():  # the swarm against the best router at each alpha, paired
        best = max(summary["routers"], key=lambda m: summary["methods"][m][a]["utility"])
        assert g["router"] == best
        assert g["gap"] == pytest.approx(summary["methods"]["swarm-skip"][a]["utility"] - summary["methods"][best][a]["utility"])
        assert g["ci95"][0] <= g["gap"] <= g["ci95"][1]
    assert {"oracle", "smallest", "largest", "random", "best-model", "threshold", "probe-router", "swarm-fixed", "only:mid"} <= set(summary["methods"])
    for method, by_alpha in summary["methods"].items():
        for a, s in by_alpha.items():
            assert 0 <= s["accuracy"] <= 1 and 0.1 - 1e-9 <= s["cost"] <= 0.9 + 1e-9, (method, a)
            assert s["utility"] == pytest.approx(s["accuracy"] - float(a) * s["cost"])
            assert s["utility"] <= summary["methods"]["oracle"][a]["utility"] + 1e-12, (method, a)
            assert s["dollars"] > 0 and s["n"] == 150
    oracle = summary["methods"]["oracle"]["0.5"]
    assert oracle["oracle_share"] == pytest.approx(1.0)
    # FrugalGPT pays for every answer it generated, vetoed or not: at least the answering call
    fg = summary["methods"]["frugalgpt"]["0.5"]
    assert fg["dollars"] >= summary["methods"]["smallest"]["0.5"]["dollars"]


def test_seeded_runs_agree(matrix, tmp_path):
    rows, _ = matrix
    methods = ("swarm-probe", "random", "routellm-mf")
    a, _ = _run(rows, tmp_path, seed=3, methods=methods)
    b, _ = _run(rows, tmp_path, seed=3, methods=methods)
    for method in a:
        assert [r.agent for r in a[method][0.5]] == [r.agent for r in b[method][0.5]], method


def test_cli_path_writes_results_with_the_disk_cache(matrix, tmp_path, monkeypatch):
    """`swarm eval main --outcomes`: the matrix file, embeddings read from a disk cache shard (no encoder)."""
    from swarm.cli import main

    rows, vectors = matrix
    path = tmp_path / "m.jsonl"
    write_outcomes(rows, path)
    cache = tmp_path / "cache"
    cache.mkdir()
    keys = [embed_mod.cache_key(t) for t in vectors]
    np.savez(cache / "shard-test.npz", keys=np.array(keys), vectors=np.stack(list(vectors.values())).astype(np.float32))
    embed_mod._cache.clear()
    monkeypatch.setattr(embed_mod, "encode", lambda texts: pytest.fail("the encoder ran despite the cache"))
    out = tmp_path / "res"
    assert main(["eval", "main", "--outcomes", str(path), "--out", str(out), "--test-size", "100", "--cache", str(cache),
                 "--methods", "swarm-probe", "knn"]) == 0
    data = json.loads((out / "main.json").read_text())
    assert set(data["methods"]) == {"swarm-probe", "knn", "oracle", "largest"}
    assert (out / ".swarm-results").is_file() and (out / "main_frontier.png").is_file()
    assert "automix is left out" in (out / "main.md").read_text()


def test_bad_requests_are_one_line_before_any_directory(tmp_path):
    rows, _ = synthetic(20)
    path = tmp_path / "m.jsonl"
    write_outcomes(rows, path)
    out = tmp_path / "res"
    with pytest.raises(ValueError, match="'gpt-9' is not in the matrix"):
        run_outcome_experiment("main", out, OutcomeSettings(path, models=("small", "gpt-9")))
    with pytest.raises(ValueError, match="--test-size must be 1 to 19"):
        run_outcome_experiment("main", out, OutcomeSettings(path, test_size=20))
    with pytest.raises(ValueError, match="does not run on an outcome matrix"):
        run_outcome_experiment("live", out, OutcomeSettings(path))
    with pytest.raises(ValueError, match="'swarm-skp' is not a method here"):  # a misspelt method is not silently left out
        run_outcome_experiment("main", out, OutcomeSettings(path, test_size=10, methods=("swarm-skp", "forc")))
    assert not out.exists()


def test_real_encoder_and_its_disk_cache(tmp_path, monkeypatch):
    texts = ["What is the capital of France?", "def add(a, b): return a + b", "The trophy did not fit in the suitcase."]
    saved = dict(embed_mod._cache)
    try:
        embed_mod._cache.clear()
        first = embed_mod.embed_cached(texts, tmp_path)
        assert first.shape == (3, 384) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-4)
        assert len(list(tmp_path.glob("shard-*.npz"))) == 1
        embed_mod._cache.clear()
        monkeypatch.setattr(embed_mod, "encode", lambda texts: pytest.fail("the encoder ran despite the cache"))
        assert np.array_equal(embed_mod.embed_cached(texts, tmp_path), first)
    finally:
        embed_mod._cache.clear()
        embed_mod._cache.update(saved)


def test_long_prompts_are_embedded_by_their_end_where_the_question_is():
    """Few-shot prompts share their first hundreds of tokens: embedded from the start they would all
    be one vector (RouterBench's ARC and Winogrande prompts were). Their ends tell them apart."""
    shots = "".join(f"Question: which planet is number {i} from the sun?\nA) one\nB) two\nAnswer: A\n\n" for i in range(30))
    questions = ["Which gas do plants take in to make sugar?", "Who wrote the novel Moby-Dick, published in 1851?"]
    saved = dict(embed_mod._cache)
    try:
        embed_mod._cache.clear()
        long = embed_mod.embed([shots + q for q in questions])
        alone = embed_mod.embed(questions)
    finally:
        embed_mod._cache.clear()
        embed_mod._cache.update(saved)
    assert float(long[0] @ long[1]) < 0.95  # not one vector
    assert float(long[0] @ alone[0]) > float(long[0] @ alone[1]) and float(long[1] @ alone[1]) > float(long[1] @ alone[0])


def test_ood_holds_each_domain_out_and_pools_them(matrix, tmp_path, monkeypatch):
    from swarm.eval.outcomes import experiment

    rows, _ = matrix
    path = tmp_path / "m.jsonl"
    write_outcomes(rows, path)
    seen = []
    real = experiment.run_methods

    def spy(train, test, *args, **kw):
        seen.append(({r.domain for r in train.rows}, {r.domain for r in test.rows}))
        return real(train, test, *args, **kw)

    monkeypatch.setattr(experiment, "run_methods", spy)
    s = OutcomeSettings(path, test_size=60, cache=tmp_path / "cache", methods=("swarm-probe", "smallest", "knn"))
    paths = run_outcome_experiment("ood", tmp_path / "res", s)
    data = json.loads(paths[0].read_text())
    assert seen == [({"b"}, {"a"}), ({"a"}, {"b"})]  # no learner ever trained on the domain it is tested on
    assert data["experiment"] == "ood" and data["held_out"] == ["a", "b"]
    for a in ("0.2", "0.5", "0.8"):
        assert data["methods"]["swarm-probe"][a]["n"] == 120
        assert data["methods"]["swarm-probe"][a]["utility"] > data["methods"]["smallest"][a]["utility"]



def test_regions_send_on_only_where_passing_on_is_worth_it(tmp_path):
    """Two clusters of queries: the dear model is always right in one and a coin in the other, the
    cheap one 70% right everywhere (nothing in the embedding tells when). One value curve for all
    queries makes the cheap agent answer everything at alpha 0.2 (passing on is worth 0.57 on
    average, answering 0.68); with regions it passes on exactly the first cluster (worth 0.82) and
    earns more. No outcome draws the map: k-means of the embeddings finds the clusters."""
    def draw(i, rng):
        x = rng.normal(size=DIM) * 0.2
        x[1] += 3.0 if i % 2 == 0 else -3.0
        return x, {"small": rng.random() < 0.7, "large": True if i % 2 == 0 else rng.random() < 0.5}, "d"

    rows, vectors = generated(600, 1, {"small": 0.0001, "large": 0.01}, draw)
    with embedded(vectors):
        train, test = stratified_split(rows, 200, 0)
        m = ["small", "large"]
        recs, learned = run_methods(Matrix(train, m), Matrix(test, m), (0.2,), 0, tmp_path, ("swarm-probe", "swarm-1region"), regions=2)
    assert learned["regions"] == 2
    cluster = {r.id: int(r.id[1:]) % 2 for r in test}
    one, two = recs["swarm-1region"][0.2], recs["swarm-probe"][0.2]
    assert sum(r.agent == "small" for r in one) >= 0.95 * len(one)  # one curve: the cheap agent answers (nearly) all
    assert all(r.agent == "large" for r in two if cluster[r.query_id] == 0)  # regions: passed on where the dear model is always right
    # kept where it is not, but for the few queries the cheap agent's probe finds unfamiliar (past 99% of its training queries' distance)
    second = [r for r in two if cluster[r.query_id] == 1]
    assert sum(r.agent == "small" for r in second) >= 0.97 * len(second)
    from swarm.eval import metrics

    assert metrics.utility(two, 0.2) > metrics.utility(one, 0.2) + 0.03

def test_frugalgpt_thresholds_on_a_long_ladder_are_searched_not_enumerated():
    """11 models (RouterBench's pool) make GRID ** 10 combinations: coordinate ascent finds thresholds
    at least as good on the training items as any single threshold shared by all agents."""
    from swarm.eval.baselines import FrugalGPT

    rng = np.random.default_rng(0)
    ladder = [f"m{i}" for i in range(11)]
    fg = FrugalGPT(0)
    fg.costs, fg.ladder = {m: 0.1 + 0.08 * i for i, m in enumerate(ladder)}, ladder
    fg._y = {m: (rng.random(300) < 0.3 + 0.06 * i).astype(float) for i, m in enumerate(ladder)}
    fg._cv = {m: np.clip(fg._y[m] * 0.5 + rng.random(300) * 0.5, 0, 1) for m in ladder[:-1]}
    t = fg.thresholds_for(0.5)
    assert list(t) == ladder[:-1] and set(t.values()) <= set(FrugalGPT.GRID)
    found = fg._train_utility(tuple(t.values()), 0.5)
    assert all(found >= fg._train_utility((g,) * 10, 0.5) for g in FrugalGPT.GRID)


def test_modularity_the_swarm_uses_a_newcomer_that_stale_routers_never_choose(tmp_path):
    """Five models: the cheap one right where the first coordinate is positive, a dear one usually
    right, and between them m2 (85% right at a mid price: the best at alpha 0.5, so the newcomer),
    m1 and m3 (coins). before: all but m2; removed: m1 leaves; added: m2 joins. Nobody in the swarm
    is retrained, and it sends m2 the queries the cheap one cannot do; the stale routers cannot. swarm-learned
    learns its pass values again from the new pool's replies (no labels) and does too."""
    def draw(i, rng):
        x = unit(rng)
        return x, {"s": (x[0] > 0) != (rng.random() < 0.05), "m1": rng.random() < 0.5, "m2": rng.random() < 0.85,
                   "m3": rng.random() < 0.55, "l": rng.random() < 0.92}, "ab"[i % 2]

    rows, vectors = generated(700, 2, {"s": 0.0001, "m1": 0.0005, "m2": 0.001, "m3": 0.002, "l": 0.01}, draw)
    path = tmp_path / "m.jsonl"
    write_outcomes(rows, path)
    with embedded(vectors):
        s = OutcomeSettings(path, test_size=300, cache=tmp_path / "cache", alphas=(0.5,))
        paths = run_outcome_experiment("modularity", tmp_path / "res", s)
    data = json.loads(paths[0].read_text())
    assert data["added"] == "m2" and data["removed"] == ["m1"] and data["kept"] == ["s", "m3", "l"]
    assert list(data["phases"]) == ["before", "removed", "added"]
    assert list(data["phases"]["before"]["agents"]) == ["s", "m1", "m3", "l"]
    assert list(data["phases"]["added"]["agents"]) == ["s", "m2", "m3", "l"]
    added = data["phases"]["added"]["methods"]
    swarm = added["swarm-skip"]["0.5"]
    assert swarm["routing"]["m2"] > 0.3  # nobody retrained: the newcomer's own probe and the re-settled curves send it work
    for r in ("knn", "forc", "routellm-mf"):
        assert added[f"stale-{r}"]["0.5"]["routing"].get("m2", 0.0) == 0.0  # a stale router never chooses what it never saw
        assert swarm["utility"] > added[f"stale-{r}"]["0.5"]["utility"] + 0.03, r
        assert added[f"retrained-{r}"]["0.5"]["routing"].get("m2", 0.0) > 0.0
        assert data["stale_refusals"][f"added/{r}"].startswith("refused")
    learned = added["swarm-learned"]["0.5"]  # its pass values learned again from the new pool's replies: no labels
    assert learned["routing"]["m2"] > 0.3
    gaps = data["phases"]["added"]["swarms_versus_best_stale_router"]
    for swarm in ("swarm-skip", "swarm-learned"):
        assert added[swarm]["0.5"]["utility"] == pytest.approx(max(added[f"stale-{r}"]["0.5"]["utility"] for r in ("knn", "forc", "routellm-mf"))
                                                          + gaps[swarm]["0.5"]["gap"])
        g = gaps[swarm]["0.5"]
        assert g["router"] == "stale-forc" and g["ci95"][0] < g["gap"] < g["ci95"][1] and g["gap"] > 0.02  # ahead of the best stale router
    assert "swarms_versus_best_stale_router" not in data["phases"]["before"]
    assert "swarm-learned minus the best stale router" in (tmp_path / "res" / "modularity.md").read_text()
    train, _ = stratified_split(rows, 300, 0)
    assert data["retraining_cost"]["label_dollars"] == pytest.approx(0.001 * len(train))
    assert "$0." in (tmp_path / "res" / "modularity.md").read_text()
    with pytest.raises(ValueError, match="at least 4 models"):
        run_outcome_experiment("modularity", tmp_path / "res2", OutcomeSettings(path, models=("s", "m1", "l")))


def test_skip_passes_a_query_past_an_agent_that_advertises_less_than_a_dearer_one(tmp_path):
    """s (cheap, right where the first coordinate is positive), bad (mid price, a coin weighted 30%)
    and l (dear, 92%): with hop "best" s hands what it cannot do straight to l, whose curve is worth
    more than bad's; with "next" every such query first visits bad, which passes it on anyway."""
    def draw(i, rng):
        x = unit(rng)
        return x, {"s": (x[0] > 0) != (rng.random() < 0.05), "bad": rng.random() < 0.3, "l": rng.random() < 0.92}, "d"

    prices = {"s": 0.0001, "bad": 0.001, "l": 0.01}
    rows, vectors = generated(500, 3, prices, draw)
    with embedded(vectors):
        train, test = stratified_split(rows, 200, 0)
        m = list(prices)
        recs, _learned = run_methods(Matrix(train, m), Matrix(test, m), (0.5,), 0, tmp_path, ("swarm-probe", "swarm-skip"), regions=1)
    chain, skip = recs["swarm-probe"][0.5], recs["swarm-skip"][0.5]
    assert not any(st.agent == "bad" for r in skip for st in r.steps)  # never visited
    passed = [r for r in chain if r.agent == "l"]
    assert passed and all([st.agent for st in r.steps] == ["s", "bad", "l"] for r in passed)
    assert sum(len(r.steps) for r in skip) == sum(len(r.steps) for r in chain) - len(passed)
    summary = summarize("main", "t", "s", recs, _learned, Matrix(test, m), (0.5,), 0.0)
    assert summary["methods"]["swarm-skip"]["0.5"]["visited"] == pytest.approx(sum(len(r.steps) for r in skip) / len(skip))
    assert summary["methods"]["oracle"]["0.5"]["visited"] == 1.0
    assert [r.agent for r in skip] == [r.agent for r in chain]  # the same answers, one hop fewer each


def two_clusters(i, rng):
    """The dear model always right in one cluster and a coin in the other; the cheap one 70% right
    everywhere (nothing in the embedding tells when)."""
    x = rng.normal(size=DIM) * 0.2
    x[1] += 3.0 if i % 2 == 0 else -3.0
    return x, {"small": rng.random() < 0.7, "large": True if i % 2 == 0 else rng.random() < 0.5}, "d"


def test_a_pass_value_learned_from_what_came_back_needs_no_region_map(tmp_path):
    """The regions test's matrix with no region map at all: one curve makes the cheap agent answer
    (nearly) everything at alpha 0.2; the value of passing on that it learns per query from what
    came back (the dear agent reporting high confidence in one cluster, a coin in the other) makes it
    pass on the first cluster and keep the second, and earns more."""
    from swarm.eval import metrics

    rows, vectors = generated(600, 1, {"small": 0.0001, "large": 0.01}, two_clusters)
    with embedded(vectors):
        train, test = stratified_split(rows, 200, 0)
        m = ["small", "large"]
        recs, _ = run_methods(Matrix(train, m), Matrix(test, m), (0.2,), 0, tmp_path, ("swarm-probe", "swarm-learned"), regions=1)
    cluster = {r.id: int(r.id[1:]) % 2 for r in test}
    one, learned = recs["swarm-probe"][0.2], recs["swarm-learned"][0.2]  # with one region swarm-probe has one curve
    assert sum(r.agent == "small" for r in one) >= 0.95 * len(one)
    first = [r for r in learned if cluster[r.query_id] == 0]
    second = [r for r in learned if cluster[r.query_id] == 1]
    assert sum(r.agent == "large" for r in first) >= 0.97 * len(first)
    assert sum(r.agent == "small" for r in second) >= 0.95 * len(second)
    assert metrics.utility(learned, 0.2) > metrics.utility(one, 0.2) + 0.03


def test_agents_learn_the_pass_value_from_peers_reports_never_their_outcomes():
    """What an agent learns from is its own probe and the confidence its peers reported: replacing
    every peer's recorded outcomes (the probes' validation correctness) changes no decision, while
    a peer that reports differently does."""
    import copy

    from swarm.eval.outcomes.passvalue import LearnedPassSwarm
    from swarm.eval.outcomes.selfassess import fit_agent

    rows, vectors = generated(400, 4, {"small": 0.0001, "large": 0.01}, two_clusters)
    x = np.stack([vectors[r.query] for r in rows])
    probes = {m: fit_agent(m, x, np.array([r.models[m].correct for r in rows])) for m in ("small", "large")}
    costs = {"small": 0.1, "large": 0.9}
    ids = [r.id for r in rows]
    before = LearnedPassSwarm.fit(probes, costs, x, (0.2,)).route(ids, x, 0.2)
    scrambled = dict(probes, large=copy.copy(probes["large"]))
    scrambled["large"].val_correct = 1.0 - np.asarray(probes["large"].val_correct)
    assert LearnedPassSwarm.fit(scrambled, costs, x, (0.2,)).route(ids, x, 0.2) == before
    modest = dict(probes, large=copy.copy(probes["large"]))
    modest["large"].val_p = np.asarray(probes["large"].val_p) * 0.5  # the dear agent reports half the confidence
    assert LearnedPassSwarm.fit(modest, costs, x, (0.2,)).route(ids, x, 0.2) != before
    with pytest.raises(ValueError, match="no values learned at alpha 0.5"):
        LearnedPassSwarm.fit(probes, costs, x, (0.2,)).route(ids, x, 0.5)



@pytest.mark.parametrize("swarm_kind", ["probe", "learned"])
def test_a_query_no_probe_can_judge_is_decided_on_the_agents_accuracy_and_price(swarm_kind):
    """Queries from a benchmark no agent was trained on (far from every training query) are ones the
    probes cannot judge. With `unfamiliar` prior each agent decides them as if its P were its accuracy:
    the cheap agent, right 90% of the time at a tenth of the price, keeps them at alpha 0.5 and passes
    them on at alpha 0.01, where the dear agent's 97% is worth the price; passed on unjudged
    (`unfamiliar` pass), every one of them climbs to the dearest agent at any alpha."""
    from swarm.eval.outcomes.passvalue import LearnedPassSwarm
    from swarm.eval.outcomes.selfassess import ProbeSwarm, fit_agent

    rng = np.random.default_rng(5)
    x = np.zeros((400, DIM), dtype=np.float32)
    x[:, : DIM // 2] = rng.normal(size=(400, DIM // 2))  # training queries span half the space
    right = {"small": rng.random(400) < 0.9, "large": rng.random(400) < 0.97}
    probes = {m: fit_agent(m, x, right[m].astype(float)) for m in right}
    assert abs(float(np.mean(probes["small"].val_correct)) - 0.9) < 0.05
    strangers = np.zeros((50, DIM), dtype=np.float32)
    strangers[:, DIM // 2:] = rng.normal(size=(50, DIM // 2)) * 3  # the half no training query spans
    assert not probes["small"].familiar(strangers[:, None, :]).any()
    costs = {"small": 0.1, "large": 0.9}
    ids = [f"s{i}" for i in range(len(strangers))]

    def answering(unfamiliar: str, alpha: float) -> set[str]:
        if swarm_kind == "probe":
            routes = ProbeSwarm.of(probes, costs, unfamiliar=unfamiliar).route(ids, strangers, alpha)
        else:
            swarm = LearnedPassSwarm.fit(probes, costs, x, (0.01, 0.5))
            swarm.unfamiliar = unfamiliar
            routes = swarm.route(ids, strangers, alpha)
        return {steps[-1].agent for steps in routes}

    assert answering("prior", 0.5) == {"small"}
    assert answering("prior", 0.01) == {"large"}
    assert answering("pass", 0.5) == {"large"}


def test_the_runtime_routes_every_query_as_the_replay_does(tmp_path):
    """swarm-runtime runs swarm-probe's agents as AgentNodes (curves advertised by gossip per region, each
    query's region found at its entry and carried on the wire): every query takes the very path the replay
    computed, at every alpha, and with regions those paths differ from one curve's. So does swarm-runtime-skip
    (the next hop "best") with swarm-skip's, whose paths skip agents and so differ from swarm-probe's."""
    def draw(i, rng):
        x = rng.normal(size=DIM) * 0.2
        x[1] += 3.0 if i % 2 == 0 else -3.0
        # mid is a coin: its probe learns noise, and at low alpha passing small's rejects straight to large is worth more
        return x, {"small": rng.random() < 0.7, "mid": rng.random() < 0.5,
                   "large": True if i % 2 == 0 else rng.random() < 0.5}, "d"

    rows, vectors = generated(500, 2, {"small": 0.0001, "mid": 0.001, "large": 0.01}, draw)
    with embedded(vectors):
        train, test = stratified_split(rows, 150, 0)
        m = ["small", "mid", "large"]
        recs, _ = run_methods(Matrix(train, m), Matrix(test, m), (0.2, 0.5, 0.8), 0, tmp_path, ("swarm-probe", "swarm-runtime", "swarm-1region",
                                                                                                     "swarm-skip", "swarm-runtime-skip"),
                              regions=2)
    differs, skips = 0, 0
    paths = lambda records: [[(s.agent, s.decision) for s in r.steps] for r in records]  # noqa: E731
    for a in (0.2, 0.5, 0.8):
        replay, runtime, one = recs["swarm-probe"][a], recs["swarm-runtime"][a], recs["swarm-1region"][a]
        assert paths(runtime) == paths(replay), a
        assert paths(recs["swarm-runtime-skip"][a]) == paths(recs["swarm-skip"][a]), a
        differs += sum(r.agent != o.agent for r, o in zip(replay, one, strict=True))
        skips += sum(x != y for x, y in zip(paths(recs["swarm-skip"][a]), paths(replay), strict=True))
    assert differs > 0 and skips > 0
