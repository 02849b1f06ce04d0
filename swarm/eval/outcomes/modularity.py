"""`swarm eval modularity --outcomes PATH`: the modularity experiment replayed on an outcome matrix.

The testbed's experiment (`swarm.eval.modularity`), on recorded outcomes, computed in-process:

1. `before`: every chosen model but one, the newcomer, which no router sees;
2. `removed`: every other model in the middle of the price range leaves (the cheapest and the
   dearest stay);
3. `added`: the newcomer joins: the model (neither cheapest nor dearest) with the best utility at
   alpha 0.5 on the training split, so that a router that cannot use it loses the most.

The swarm (the recommended design, `swarm-skip`: value curves per region, a query passed to the
dearer agent that advertises the most) is never retrained: each keeps the probe it learned from its own outcomes, and
only the value curves re-settle along the new cascade (backward induction, as gossip does live);
the newcomer arrives with its own probe. `swarm-learned` (each agent's value of passing a query on,
learned per query from the replies that came back, `swarm.eval.outcomes.passvalue`) learns those
values again in each phase from the replies to the training queries the new pool serves: no label
and no model's answers are paid for (a reply carries the answering agent's cost and the P it
reported), where a retrained router needs every current model's graded answer to every training
query. The routers (kNN, FORC, RouteLLM-MF) are trained on the
`before` pool's joint matrix and run two ways, as in the testbed: stale (`StaleRouter`: the old
model's predictions over the agents it knows that are still there; a newcomer is never chosen)
and retrained on the current pool, which for the newcomer means paying for its answers to every
training query first (reported in dollars). Costs are one scale for every phase: each model's mean
dollars per training query over all chosen models, log-scaled to 0.1-0.9.
"""

from __future__ import annotations

import time
from pathlib import Path


from swarm.eval import metrics
from swarm.eval.outcomes.experiment import ALPHAS, RECOMMENDED, Matrix, OutcomeSettings, embed_rows, record, regions_of
from swarm.eval.outcomes.matrix import OutcomeRow
from swarm.eval.outcomes.replay import mean_dollars
from swarm.eval.outcomes.split import stratified_split
from swarm.eval.records import Record, Step

ROUTERS = ("knn", "forc", "routellm-mf")
LEARNED = "swarm-learned"


def pools(models: list[str], costs: dict[str, float], train: Matrix) -> tuple[str, list[str]]:
    """The newcomer, and the models that leave (see the module's docstring); at least 4 models."""
    order = sorted(models, key=lambda m: (costs[m], m))
    middle = order[1:-1]
    newcomer = max(middle, key=lambda m: (float(train.correctness(m).mean()) - 0.5 * costs[m], m))
    rest = [m for m in middle if m != newcomer]
    return newcomer, rest[::2]


def run_modularity(out: Path, s: OutcomeSettings, models: list[str], rows: list[OutcomeRow], progress=None) -> list[Path]:
    from swarm.costscale import log_cost_scale
    from swarm.eval.baselines import Oracle
    from swarm.eval.modularity import StaleRouter, new_router, write
    from swarm.eval.outcomes.passvalue import LearnedPassSwarm
    from swarm.eval.outcomes.selfassess import ProbeSwarm, fit_agent

    say = progress or (lambda _msg: None)
    began = time.monotonic()
    alphas = tuple(s.alphas) or ALPHAS
    train_rows, test_rows = stratified_split(rows, s.test_size, s.seed)
    everyone = Matrix(train_rows, models)
    usd = mean_dollars(train_rows, models)
    costs = dict(sorted(log_cost_scale(usd).items(), key=lambda kv: (kv[1], kv[0])))
    newcomer, removed = pools(models, costs, everyone)
    before = [m for m in costs if m != newcomer]
    after_removal = [m for m in before if m not in removed]
    added = [m for m in costs if m in after_removal or m == newcomer]
    x_train, x_test = embed_rows(train_rows, s.cache), embed_rows(test_rows, s.cache)
    region_map, r_train, r_test = regions_of(x_train, x_test, s.regions, s.seed)
    n_regions = 1 if region_map is None else region_map.k
    probes = {m: fit_agent(m, x_train, everyone.correctness(m), s.seed) for m in costs}  # each its own outcomes; once
    say(f"fitted {len(probes)} probes, one per model; newcomer {newcomer}; leaving {', '.join(removed)}")
    ids = [r.id for r in test_rows]

    t = time.monotonic()
    trained0 = {r: new_router(r, s.seed).fit(Matrix(train_rows, before).items, Matrix(train_rows, before).labels, before) for r in ROUTERS}
    fit_s0 = time.monotonic() - t
    phases: dict[str, dict] = {}
    refusals: dict[str, str] = {}
    retrain_cost: dict = {}
    for name, pool in (("before", before), ("removed", after_removal), ("added", added)):
        pool_costs = {m: costs[m] for m in pool}
        test = Matrix(test_rows, pool)
        swarm = ProbeSwarm.of({m: probes[m] for m in pool}, pool_costs, regions=r_train, k=n_regions,
                              hop="best")
        learned = LearnedPassSwarm.fit({m: probes[m] for m in pool}, pool_costs, x_train, alphas)  # from the new pool's replies
        runs: dict[str, dict[float, list[Record]]] = {"oracle": {}, RECOMMENDED: {}, LEARNED: {}}
        for a in alphas:
            runs["oracle"][a] = [record(r, "oracle", a, [Step(m, "forced")], pool_costs)
                                 for r, m in zip(test_rows, Oracle(test.labels).choose(test.items, a, pool_costs), strict=True)]
            walks = swarm.route(ids, x_test, a, r_test)
            runs[RECOMMENDED][a] = [record(r, RECOMMENDED, a, w, pool_costs) for r, w in zip(test_rows, walks, strict=True)]
            runs[LEARNED][a] = [record(r, LEARNED, a, w, pool_costs) for r, w in zip(test_rows, learned.route(ids, x_test, a), strict=True)]
        if name == "before":
            routers = {r: trained0[r] for r in ROUTERS}
        else:
            for r, router in trained0.items():
                try:
                    router.choose(test.items[:1], 0.5, pool_costs)
                    refusals[f"{name}/{r}"] = "routed (no refusal)"
                except ValueError as exc:
                    refusals[f"{name}/{r}"] = f"refused: {exc}"
            t = time.monotonic()
            retrained = {r: new_router(r, s.seed).fit(Matrix(train_rows, pool).items, Matrix(train_rows, pool).labels, pool) for r in ROUTERS}
            if name == "added":
                retrain_cost = {"new_agent": newcomer, "label_items": len(train_rows),
                                "label_dollars": float(sum(r.models[newcomer].cost for r in train_rows)),
                                "fit_wall_s_all_routers": time.monotonic() - t, "first_fit_wall_s_all_routers": fit_s0}
            routers = {**{f"stale-{r}": StaleRouter(trained0[r]) for r in ROUTERS}, **{f"retrained-{r}": retrained[r] for r in ROUTERS}}
        for method, router in routers.items():
            runs[method] = {a: [record(r, method, a, [Step(m, "forced")], pool_costs)
                                for r, m in zip(test_rows, router.choose(test.items, a, pool_costs), strict=True)] for a in alphas}
        say(f"{name}: pool {', '.join(pool)}")
        phases[name] = {"agents": pool_costs, "records": runs, "labels": test.labels}

    summary = {
        "experiment": "modularity", "title": "modularity (replayed outcomes): the pool changes, no agent retrained",
        "setup": (f"outcome matrix {s.outcomes}: {len(models)} models; stratified split, seed {s.seed}: {len(test_rows)} test, "
                  f"{len(train_rows)} train; before: every model but {newcomer}; removed: {', '.join(removed)} leave; added: "
                  f"{newcomer} joins (never seen by a router); the swarm's value curves on {n_regions} regions; cost: mean "
                  "dollars per training query, log-scaled to 0.1-0.9, one scale for every phase"),
        "alphas": list(alphas), "seconds": time.monotonic() - began, "dollars_per_query": usd,
        "settings": {"models": models, "test_size": s.test_size, "seed": s.seed, "outcomes": str(s.outcomes), "regions": s.regions},
        "kept": after_removal, "removed": removed, "added": newcomer, "stale_refusals": refusals, "retraining_cost": retrain_cost,
        "phases": {}, "recommended": RECOMMENDED, "routers": list(ROUTERS),
    }
    for name, ph in phases.items():
        agents = list(ph["agents"])
        out_ph: dict = {"agents": ph["agents"], "methods": {}}
        for method, by_alpha in ph["records"].items():
            out_ph["methods"][method] = {}
            for a, recs in by_alpha.items():
                m = metrics.summarize(recs, a, agents, ph["labels"], oracle_utility=metrics.utility(ph["records"]["oracle"][a], a))
                m.pop("easy_hard", None)
                out_ph["methods"][method][f"{a:g}"] = m
        stale = [m for m in ph["records"] if m.startswith("stale-")]
        if stale:  # each swarm against the best stale router at each alpha, with the noise of the test set
            out_ph["swarms_versus_best_stale_router"] = {
                swarm: {f"{a:g}": {"router": (best := max(stale, key=lambda m: out_ph["methods"][m][f"{a:g}"]["utility"])),
                                   **metrics.paired_gap(ph["records"][swarm][a], ph["records"][best][a], a)} for a in alphas}
                for swarm in (RECOMMENDED, LEARNED)}
        summary["phases"][name] = out_ph
    return write(summary, out)
