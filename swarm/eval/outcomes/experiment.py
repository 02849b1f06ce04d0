"""`swarm eval main|ood|modularity --outcomes PATH`: the main, out-of-domain and modularity experiments
replayed on an outcome matrix, in-process (ood: `run_ood`; modularity: `swarm.eval.outcomes.modularity`;
the command's entry, by experiment name: `swarm.eval.outcomes.run`).

Every routing decision is a function of the query and the recorded outcomes, so nothing is
launched: each method's decisions are computed directly and become the same per-query `Record`s
the testbed's experiments write, summarised by the same `swarm.eval.metrics` (utility at each
alpha on the paper's 0-1 cost, share of the Oracle's utility) and written by `swarm.eval.report`.

- split: `stratified_split` (seeded, stratified by domain): `test_size` queries test, the rest train;
  only queries with an outcome for every chosen model are used.
- cost: each model's mean dollars per query on the training split, log-scaled to 0.1-0.9
  (`swarm.costscale`); the dollars each method spends per query are reported beside it (a swarm
  rejection is free: the probe reads the query's embedding; a FrugalGPT veto is not: the vetoed
  answer was generated and paid for).
- swarm-probe: one agent per model, each with a probe learned from its own training
  outcomes only (`swarm.eval.outcomes.selfassess`), judging a query against the next agent's value
  curve of the query's region (`regions`, default 4: k-means of the training queries' embeddings,
  `swarm.assess.regions`; no outcome is used to draw it); swarm-1region: the same with one curve for
  every query; swarm-skip (recommended): with regions, and an agent
  passes a query to whichever dearer agent advertises the most for its region (not the next one:
  dominated agents are skipped, fewer hops);
  swarm-fixed: the paper's fixed bar (1 - alpha) ** 0.5;
  swarm-learned: each agent learns the value of passing a query on to the next agent per query, from
  what came back to it when it did (`swarm.eval.outcomes.passvalue`), in place of the curves.
  swarm-runtime, swarm-runtime-skip: swarm-probe's and swarm-skip's agents run by the runtime's own
  AgentNodes on an in-memory network (`swarm.eval.outcomes.runtime`; the topology's `next_hop: next`
  and `best`): what a launched swarm of these probes under this region map does.
- centralized, trained on the joint matrix of the training split: kNN, FORC, RouteLLM-MF
  (`swarm.eval.baselines.learned`) and FrugalGPT (`swarm.eval.baselines.cascades`, scoring the
  recorded responses). AutoMix is left out: it needs each model to verify its own answer live.
- trivial: the Oracle (cheapest correct model), smallest, largest, random, every single model
  (`only:<model>`), best-model (the most accurate on the training split), and threshold (every
  agent's calibrated P against one bar, the best on the training split's out-of-fold P per alpha).
- diagnostic: probe-router, a centralized router over the swarm's own probes (each query to the
  model whose probe's P - alpha x cost is highest): what the swarm's agents' self-assessments are
  worth when one place reads them all, so the gap between it and the swarm is what deciding apart
  costs, and the gap between it and a router is the self-assessments' own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from swarm.assess.probe import Probe
from swarm.eval import metrics
from swarm.eval.outcomes.matrix import OutcomeRow, model_names
from swarm.eval.outcomes.replay import mean_dollars
from swarm.eval.outcomes.selfassess import judged_p
from swarm.eval.outcomes.split import stratified_split
from swarm.eval.records import Record, Step
from swarm.tasks.base import TaskItem

ALPHAS = (0.2, 0.5, 0.8)
ROUTERS = ("knn", "forc", "routellm-mf", "frugalgpt")
RECOMMENDED = "swarm-skip"
RUNTIMES = {"swarm-runtime": ("swarm-probe", "next"), "swarm-runtime-skip": ("swarm-skip", "best")}  # method -> (its replay, next hop)
SWARMS = ("swarm-probe", "swarm-skip", "swarm-1region", "swarm-fixed", "swarm-learned", *RUNTIMES)
DIAGNOSTICS = ("threshold", "probe-router")  # methods built on the swarm's probes that are neither a swarm nor a router
LEFT_OUT = {"automix": "needs each model to verify its own answer live; an outcome matrix records no verification"}
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(21))


@dataclass
class OutcomeSettings:
    outcomes: Path
    models: tuple[str, ...] = ()  # empty: every model of the matrix
    test_size: int = 1000
    alphas: tuple[float, ...] = ()  # empty: ALPHAS
    seed: int = 0
    cache: Path | None = None  # embeddings' disk cache (default: the user's cache folder)
    methods: tuple[str, ...] = field(default_factory=tuple)  # empty: all
    regions: int = 4  # k of the region map the swarm's value curves are given on (1: one curve for every query)


@dataclass
class Matrix:
    """The chosen models' outcomes on one split, in the shapes the baselines take."""

    rows: list[OutcomeRow]
    models: list[str]

    @property
    def items(self) -> list[TaskItem]:
        return [TaskItem(id=r.id, prompt=r.query, gold=r.gold or "", verifier="exact", domain=r.domain) for r in self.rows]

    @property
    def labels(self) -> dict[str, dict[str, bool]]:
        return {r.id: {m: r.models[m].correct >= 0.5 for m in self.models} for r in self.rows}

    def correctness(self, model: str) -> np.ndarray:
        return np.array([r.models[model].correct for r in self.rows], dtype=np.float64)

    def answers(self) -> dict[str, dict[str, str]]:
        return {m: {r.id: r.models[m].answer for r in self.rows} for m in self.models}


def choose_models(rows: Sequence[OutcomeRow], models: Sequence[str]) -> tuple[list[str], list[OutcomeRow]]:
    known = model_names(rows)
    chosen = list(models or known)
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise ValueError(f"model {unknown[0][:80]!r} is not in the matrix (it has: {', '.join(known)[:300]})")
    if len(chosen) < 2 or len(set(chosen)) != len(chosen):
        raise ValueError("choose at least two different models")
    kept = [r for r in rows if all(m in r.models for m in chosen)]
    if not kept:
        raise ValueError("no query has an outcome for every chosen model")
    return chosen, kept


class ProbeRouter:
    """Each query to the model whose own probe's P - alpha x cost is highest (`x`: the test queries'
    embeddings, in the order `choose` is given them; a query a probe cannot judge gets its prior, its
    validation accuracy, as the swarm's agents do); cheaper first on a tie."""

    def __init__(self, probes: Mapping[str, Probe], costs: Mapping[str, float], x: np.ndarray) -> None:
        self.order = sorted(probes, key=lambda m: (costs[m], m))
        states = np.asarray(x, dtype=np.float32)[:, None, :]
        self.p = np.stack([judged_p(probes[m], states) for m in self.order], axis=1)
        self.cost = np.array([costs[m] for m in self.order])

    def choose(self, items, alpha, agents):
        if len(items) != len(self.p):
            raise ValueError(f"{len(items)} queries for {len(self.p)} embeddings")
        return [self.order[i] for i in np.argmax(self.p - alpha * self.cost, axis=1)]


def record(row: OutcomeRow, method: str, alpha: float, steps: list[Step], costs: dict[str, float]) -> Record:
    """The record of one query: the last step's model answered (its answer counts)."""
    agent = steps[-1].agent
    o = row.models[agent]
    return Record(query_id=row.id, method=method, alpha=alpha, domain=row.domain, difficulty=1, agent=agent, cost=costs[agent],
                  correct=o.correct >= 0.5, calls=sum(s.decision != "reject" or method == "frugalgpt" for s in steps), steps=steps,
                  answer=o.answer)


def dollars(recs: Sequence[Record], rows: dict[str, OutcomeRow], paid_rejections: bool) -> float:
    """Mean dollars per query: the answering call, and each vetoed call when it was generated."""
    total = 0.0
    for r in recs:
        total += sum(rows[r.query_id].models[s.agent].cost for s in r.steps if s.decision != "reject" or paid_rejections)
    return total / len(recs) if recs else 0.0


def embed_rows(rows: Sequence[OutcomeRow], cache: Path | None) -> np.ndarray:
    from swarm.eval.embed import embed_cached

    return embed_cached([r.query for r in rows], cache)


def regions_of(x_train: np.ndarray, x_test: np.ndarray, k: int, seed: int):
    """The swarm's region map (k-means of the training queries' embeddings) and each training and
    test query's region; (None, None, None) when there is one region."""
    from swarm.assess.regions import RegionMap

    region_map = RegionMap.fit(x_train, min(k, len(x_train)), seed)
    if region_map.k == 1:
        return None, None, None
    return region_map, region_map.assign(x_train), region_map.assign(x_test)


def run_methods(train: Matrix, test: Matrix, alphas: Sequence[float], seed: int, cache: Path | None,
                wanted: Sequence[str] = (), progress=None, usd: dict[str, float] | None = None,
                regions: int = 4) -> tuple[dict[str, dict[float, list[Record]]], dict]:
    """Every method's records on the test split at each alpha, and what was learned (costs, dollars;
    `usd`: each model's dollars per query, default its mean on the training split; `regions`: k of
    the swarm's region map)."""
    from swarm.costscale import log_cost_scale
    from swarm.eval.baselines import FORCRouter, KNNRouter, Largest, MFRouter, Oracle, Random, Smallest
    from swarm.eval.outcomes.passvalue import LearnedPassSwarm
    from swarm.eval.outcomes.selfassess import ProbeSwarm, fit_agent

    say = progress or (lambda _msg: None)
    models = train.models
    usd = usd or mean_dollars(train.rows, models)
    costs = dict(sorted(log_cost_scale(usd).items(), key=lambda kv: (kv[1], kv[0])))
    order = list(costs)
    want = (lambda n: not wanted or n in wanted or n in ("oracle", "largest"))
    x_train, x_test = embed_rows(train.rows, cache), embed_rows(test.rows, cache)
    say(f"embedded {len(train.rows)} training and {len(test.rows)} test queries")
    labels_train, labels_test = train.labels, test.labels
    items_train, items_test = train.items, test.items
    by_id = {r.id: r for r in test.rows}

    def routed(name: str, router) -> dict[float, list[Record]]:
        out = {}
        for a in alphas:
            choice = router.choose(items_test, a, costs)
            out[a] = [record(r, name, a, [Step(m, "forced")], costs) for r, m in zip(test.rows, choice, strict=True)]
        return out

    class Fixed:  # always one model
        def __init__(self, model):
            self.model = model

        def choose(self, items, alpha, agents):
            return [self.model] * len(items)

    records: dict[str, dict[float, list[Record]]] = {}
    probes = {}
    if any(want(n) for n in (*SWARMS, *DIAGNOSTICS)):
        for m in order:  # each agent learns from its own outcomes only
            probes[m] = fit_agent(m, x_train, train.correctness(m), seed)
        say(f"fitted {len(probes)} probes, one per model, each on its own outcomes")
    region_map, r_train, r_test = regions_of(x_train, x_test, regions, seed)
    n_regions = 1 if region_map is None else region_map.k
    for name, bar, k, hop in (("swarm-probe", "curve", n_regions, "next"), ("swarm-skip", "curve", n_regions, "best"),
                              ("swarm-1region", "curve", 1, "next"), ("swarm-fixed", "fixed", 1, "next")):
        if want(name) and not (name == "swarm-1region" and n_regions == 1):
            swarm = ProbeSwarm.of(probes, costs, bar=bar, regions=r_train if k > 1 else None, k=k, hop=hop)
            ids = [r.id for r in test.rows]
            records[name] = {a: [record(r, name, a, steps, costs)
                                 for r, steps in zip(test.rows, swarm.route(ids, x_test, a, r_test if k > 1 else None), strict=True)]
                             for a in alphas}
    for name, (replayed, hop) in RUNTIMES.items():
        if not want(name):
            continue
        from swarm.eval.outcomes.runtime import route_in_runtime

        texts = [r.query for r in test.rows]
        answers = {m: {r.query: r.models[m].answer for r in test.rows} for m in order}
        walked = route_in_runtime(probes, costs, texts, answers, dict(zip(texts, x_test, strict=True)), alphas, region_map, r_train, hop)
        records[name] = {a: [record(r, name, a, steps, costs) for r, steps in zip(test.rows, walked[a], strict=True)] for a in alphas}
        if replayed in records:  # the same agents, probes and curves: a path that differs is a rounding of a curve on the wire
            paths = {m: [[(s.agent, s.decision) for s in r.steps] for a in alphas for r in records[m][a]] for m in (replayed, name)}
            differ = sum(x != y for x, y in zip(paths[replayed], paths[name], strict=True))
            say(f"{name}: {replayed}'s agents run by the runtime's AgentNodes (next hop {hop!r}); {differ} of {len(paths[name])} "
                f"queries took another path than in {replayed}")
    if want("swarm-learned"):
        learned_swarm = LearnedPassSwarm.fit(probes, costs, x_train, alphas)
        ids = [r.id for r in test.rows]
        records["swarm-learned"] = {a: [record(r, "swarm-learned", a, steps, costs)
                                        for r, steps in zip(test.rows, learned_swarm.route(ids, x_test, a), strict=True)] for a in alphas}
        say("swarm-learned: every agent learned the value of passing on from what came back to it")
    if want("threshold"):
        records["threshold"] = threshold_cascade(probes, costs, train, test, x_test, alphas)
    if want("probe-router"):
        records["probe-router"] = routed("probe-router", ProbeRouter(probes, costs, x_test))
    simple = {"oracle": lambda: Oracle(labels_test), "smallest": Smallest, "largest": Largest, "random": lambda: Random(seed)}
    for name, make in simple.items():
        if want(name):
            records[name] = routed(name, make())
    if want("best-model"):
        best = max(order, key=lambda m: (train.correctness(m).mean(), -costs[m]))
        records["best-model"] = routed("best-model", Fixed(best))
    for m in order:
        if want(f"only:{m}"):
            records[f"only:{m}"] = routed(f"only:{m}", Fixed(m))
    learned = {"knn": lambda: KNNRouter(), "forc": lambda: FORCRouter(seed=seed), "routellm-mf": lambda: MFRouter(seed=seed)}
    for name, make in learned.items():
        if want(name):
            records[name] = routed(name, make().fit(items_train, labels_train, order))
            say(f"{name}: trained on the joint matrix")
    if want("frugalgpt"):
        records["frugalgpt"] = frugal_cascade(train, test, costs, alphas, seed, cache)
        say("frugalgpt: trained on the joint matrix (scorers on the recorded responses)")
    return records, {"costs": costs, "dollars": usd, "by_id": by_id, "regions": n_regions}


def frugal_cascade(train: Matrix, test: Matrix, costs: dict[str, float], alphas, seed: int, cache: Path | None) -> dict[float, list[Record]]:
    """FrugalGPT on the recorded responses: each cheaper model's answer is generated, scored and kept or vetoed."""
    from swarm.eval.baselines import FrugalGPT
    from swarm.eval.embed import embed_cached

    order = list(costs)
    for m in order[:-1]:  # warm the disk cache with the scorer's texts
        embed_cached([FrugalGPT._text(i, r.models[m].answer) for i, r in zip(train.items, train.rows, strict=True)], cache)
        embed_cached([FrugalGPT._text(i, r.models[m].answer) for i, r in zip(test.items, test.rows, strict=True)], cache)
    fg = FrugalGPT(seed).fit(train.items, train.answers(), train.labels, costs)
    items = test.items
    scores = {m: fg.score(m, items, [r.models[m].answer for r in test.rows]) for m in order[:-1]}
    out = {}
    for a in alphas:
        t = fg.thresholds_for(a)
        recs = []
        for k, r in enumerate(test.rows):
            steps = []
            for m in order[:-1]:
                if scores[m][k] >= t[m]:
                    steps.append(Step(m, "answer"))
                    break
                steps.append(Step(m, "reject"))
            else:
                steps.append(Step(order[-1], "forced"))
            recs.append(record(r, "frugalgpt", a, steps, costs))
        out[a] = recs
    return out


def threshold_cascade(probes, costs, train: Matrix, test: Matrix, x_test: np.ndarray, alphas) -> dict[float, list[Record]]:
    """Cheapest first, an agent answers when its calibrated P >= one bar shared by all, the bar that
    maximises utility on the training split (scored with the probes' out-of-fold P)."""
    order = list(costs)
    states = np.asarray(x_test, dtype=np.float32)[:, None, :]
    p_test = {m: probes[m].p_know(states) for m in order[:-1]}
    p_val = {m: np.asarray(probes[m].val_p, dtype=np.float64) for m in order[:-1]}
    right = {m: train.correctness(m) >= 0.5 for m in order}

    def walk(p: dict[str, np.ndarray], k: int, bar: float) -> list[str]:
        taken = []
        for m in order[:-1]:
            taken.append(m)
            if p[m][k] >= bar:
                return taken
        return [*taken, order[-1]]

    out = {}
    for a in alphas:
        def gain(bar: float) -> float:
            return float(np.mean([right[w[-1]][k] - a * costs[w[-1]] for k in range(len(train.rows)) for w in [walk(p_val, k, bar)]]))
        bar = max(THRESHOLDS, key=lambda b: (gain(b), -b))
        out[a] = []
        for k, r in enumerate(test.rows):
            w = walk(p_test, k, bar)
            steps = [Step(m, "reject") for m in w[:-1]] + [Step(w[-1], "forced" if w[-1] == order[-1] else "answer")]
            out[a].append(record(r, "threshold", a, steps, costs))
    return out


def summarize(name: str, title: str, setup: str, records, learned: dict, test: Matrix, alphas, seconds: float, extra: dict | None = None) -> dict:
    """The testbed's summary shape (`summary.methods`, `.recommended`, `.routers`), dollars beside the 0-1 cost."""
    costs, by_id = learned["costs"], learned["by_id"]
    agents = list(costs)
    labels = test.labels
    summary: dict = {
        "experiment": name, "title": title, "setup": setup, "alphas": list(alphas), "agents": costs,
        "dollars_per_query": learned["dollars"], "seconds": seconds,
        "forced_accuracy": {"test": {m: float(np.mean([labels[q][m] for q in labels])) for m in agents}},
        "methods": {}, "routers": [m for m in ROUTERS if m in records],
        "recommended": RECOMMENDED if RECOMMENDED in records else None, "left_out": LEFT_OUT, **(extra or {}),
    }
    for method, by_alpha in records.items():
        summary["methods"][method] = {}
        for a, recs in by_alpha.items():
            oracle_u = metrics.utility(records["oracle"][a], a)
            s = metrics.summarize(recs, a, agents, labels, oracle_utility=oracle_u)
            s["dollars"] = dollars(recs, by_id, paid_rejections=method == "frugalgpt")
            s["visited"] = float(np.mean([len(r.steps) for r in recs])) if recs else 0.0  # agents a query visited (a router's: 1)
            summary["methods"][method][f"{a:g}"] = s
    if summary["routers"]:  # each swarm against the best router at each alpha, with the noise of the test set
        gaps = {}
        for swarm in (m for m in SWARMS if m in records):
            gaps[swarm] = {}
            for a in alphas:
                best = max(summary["routers"], key=lambda m: summary["methods"][m][f"{a:g}"]["utility"])
                gaps[swarm][f"{a:g}"] = {"router": best, **metrics.paired_gap(records[swarm][a], records[best][a], a)}
        if RECOMMENDED in gaps:
            summary["versus_best_router"] = gaps[RECOMMENDED]
        summary["swarms_versus_best_router"] = gaps
    return summary


def markdown_table(summary: dict) -> str:
    """One row per method: utility, share of the Oracle's utility and accuracy per alpha; 0-1 cost and dollars per query."""
    alphas = summary["alphas"]
    head = ["method", *[f"utility a={a:g}" for a in alphas], *[f"share of Oracle a={a:g}" for a in alphas],
            *[f"acc a={a:g}" for a in alphas], *[f"cost a={a:g}" for a in alphas], *[f"$/query a={a:g}" for a in alphas]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for method, by_alpha in summary["methods"].items():
        cells = [by_alpha[f"{a:g}"] for a in alphas]
        row = ([f"{c['utility']:.3f}" for c in cells] + [f"{c['oracle_share']:.2f}" for c in cells]
               + [f"{c['accuracy']:.3f}" for c in cells] + [f"{c['cost']:.3f}" for c in cells] + [f"{c['dollars']:.6f}" for c in cells])
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    notes = "".join(f"\n{m} is left out: {why}." for m, why in summary.get("left_out", {}).items())
    for swarm, by_alpha in summary.get("swarms_versus_best_router", {}).items():
        for a, g in by_alpha.items():
            notes += (f"\n{swarm} minus the best router ({g['router']}) at alpha {a}: {g['gap']:+.3f} utility "
                      f"(95% paired bootstrap interval {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}).")
    return "\n".join(lines) + "\n" + notes + "\n"


def write(summary: dict, out: Path, name: str) -> list[Path]:
    from swarm.eval import report

    text = f"# {summary['title']}\n\n{summary['setup']}\n\n" + markdown_table(summary)
    return report.write_outputs(out, name, summary, text, {"frontier": lambda p: report.frontier_png(summary, p),
                                                           "routing": lambda p: report.routing_png(summary, p)})


def run_main(out: Path, s: OutcomeSettings, models: list[str], rows: list[OutcomeRow], progress=None) -> list[Path]:
    """The main experiment on `rows` (the queries with an outcome of every one of `models`) into the
    results directory `out` (already prepared)."""
    began = time.monotonic()
    train_rows, test_rows = stratified_split(rows, s.test_size, s.seed)
    train, test = Matrix(train_rows, models), Matrix(test_rows, models)
    alphas = tuple(s.alphas) or ALPHAS
    records, learned = run_methods(train, test, alphas, s.seed, s.cache, s.methods, progress, regions=s.regions)
    domains = sorted({r.domain for r in rows})
    setup = (f"outcome matrix {s.outcomes}: {len(models)} models, {len(rows)} queries with every model's outcome "
             f"(domains {', '.join(domains)}); stratified split, seed {s.seed}: {len(test_rows)} test, {len(train_rows)} train; "
             "cost: mean dollars per training query, log-scaled to 0.1-0.9; "
             f"the swarm's value curves on {learned['regions']} regions (k-means of the training queries' embeddings)")
    summary = summarize("main", "main (replayed outcomes): every method on real models' recorded outcomes", setup, records, learned,
                        test, alphas, time.monotonic() - began,
                        {"settings": {"models": models, "test_size": s.test_size, "seed": s.seed, "outcomes": str(s.outcomes),
                                      "regions": s.regions}})
    return write(summary, out, "main")


def run_ood(out: Path, s: OutcomeSettings, models: list[str], rows: list[OutcomeRow], progress=None) -> list[Path]:
    """Out of domain: each domain in turn is held out of every learner's training (the swarm's probes
    and every router) and tested on (`test_size` of its queries at most, seeded); the records of the
    held-out domains are pooled into one table. Cost: each model's mean dollars over the whole matrix
    (a price, not something learned), so every fold routes on the same scale."""
    import random

    began = time.monotonic()
    domains = sorted({r.domain for r in rows})
    if len(domains) < 2:
        raise ValueError(f"{s.outcomes}: ood needs at least two domains to hold one out, the matrix has {len(domains)}")
    alphas = tuple(s.alphas) or ALPHAS
    usd = mean_dollars(rows, models)
    records: dict[str, dict[float, list[Record]]] = {}
    tested: list[OutcomeRow] = []
    learned: dict = {}
    for d in domains:
        held = sorted((r for r in rows if r.domain == d), key=lambda r: r.id)
        random.Random(f"outcomes-ood|{d}|{s.seed}").shuffle(held)
        test = held[: s.test_size]
        train = [r for r in rows if r.domain != d]
        if progress:
            progress(f"ood: holding out {d} ({len(test)} test queries; {len(train)} training queries of other domains)")
        recs, learned = run_methods(Matrix(train, models), Matrix(test, models), alphas, s.seed, s.cache, s.methods, progress, usd,
                                    regions=s.regions)
        for method, by_alpha in recs.items():
            for a, rs in by_alpha.items():
                records.setdefault(method, {}).setdefault(a, []).extend(rs)
        tested.extend(test)
    learned["by_id"] = {r.id: r for r in tested}
    setup = (f"outcome matrix {s.outcomes}: {len(models)} models; each of the domains {', '.join(domains)} held out of every "
             f"learner's training in turn and tested on (at most {s.test_size} queries each, seed {s.seed}); {len(tested)} test "
             "queries pooled; cost: mean dollars per query over the matrix, log-scaled to 0.1-0.9")
    summary = summarize("ood", "ood (replayed outcomes): every learner trained without the test query's domain", setup, records,
                        learned, Matrix(tested, models), alphas, time.monotonic() - began,
                        {"settings": {"models": models, "test_size": s.test_size, "seed": s.seed, "outcomes": str(s.outcomes),
                                      "regions": s.regions},
                         "held_out": domains})
    return write(summary, out, "ood")
