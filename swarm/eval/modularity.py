"""The modularity experiment (`swarm eval modularity`): change the pool with no retraining of anyone.

One swarm, three pools, in order, at each alpha (default 0.5):

1. `before`: the topology's four agents; the centralized routers (kNN, FORC, RouteLLM-MF) are
   trained on every agent's forced answers to the training items.
2. `removed` (4 -> 2): the middle agents leave gracefully (`Swarm.remove_agent`), the cheapest
   and the terminal one stay.
3. `added`: a new agent joins (`Swarm.add_agent`): a copy of a removed rung's spec under a new
   name (`<rung>-new`), i.e. an agent no router has ever seen.

The swarm's agents are never retrained: the pool changes and that is all. The routers are run
both ways:

- stale (trained on the `before` pool): asked to route among a different pool they refuse (the
  error is recorded); `stale-<router>` is the fallback a deployment would use, the old model's
  predictions over the agents it knows that are still there (a removed agent is never chosen;
  a new one never is either);
- retrained (`retrained-<router>`): fitted again on the current pool's labels; for the new agent
  that means collecting its forced answers to every training item first, whose cost (seconds,
  tokens) is reported.

The Oracle of each pool is computed from that pool's own forced answers.
Writes `modularity.json`, `modularity.md`, `modularity_routing.png` and per-phase records.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from swarm.errors import SwarmError
from swarm.cluster.connect import private_ray
from swarm.eval import metrics
from swarm.eval.data import held_out_items, training_items
from swarm.eval.harness import (
    Forced,
    Routed,
    SelfRouting,
    agent_costs,
    collect_labels,
    run_method,
    say,
)
from swarm.tasks.testbed_families import IN_DOMAIN_FAMILIES

ROUTERS = ("knn", "forc", "routellm-mf")


def _variant(s) -> str:
    if s.probes is not None:
        return f" with the probes of {s.probes} (the same models)"
    return f" with the self-aware agents of {s.trained}" if s.trained is not None else ""


def new_router(name: str, seed: int):
    from swarm.eval.baselines import FORCRouter, KNNRouter, MFRouter

    return {"knn": KNNRouter, "forc": lambda: FORCRouter(seed=seed), "routellm-mf": lambda: MFRouter(seed=seed)}[name]()


class StaleRouter:
    """A router trained on an old pool, run on the current one: the old model's predictions,
    restricted to the agents it knows that are still in the pool."""

    def __init__(self, router) -> None:
        self.router = router

    def choose(self, items, alpha, agents):
        known = [k for k, a in enumerate(self.router.agents) if a in agents]
        if not known:
            raise SwarmError(f"stale router knows none of the agents {', '.join(agents)}")
        p = self.router.predict(items)[:, known]
        names = [self.router.agents[k] for k in known]
        u = p - alpha * np.array([agents[a] for a in names])
        return [names[k] for k in np.argmax(u, axis=1)]


def run_modularity(out: Path, s) -> list[Path]:
    from swarm import launch
    from swarm.eval.baselines import Oracle
    from swarm.topology import load_topology

    alphas = tuple(s.alphas) or (0.5,)
    topo = load_topology(s.topology)
    swarm_method = "swarm"
    if s.probes is not None:  # the probe swarm (the models untouched; a newcomer brings its own probe): it wins over --trained
        from swarm.eval.trained import probe_topology

        topo, swarm_method = probe_topology(topo, s.probes), "swarm-probe"
    elif s.trained is not None:  # the self-aware swarm; the routers then route among the same (trained) agents
        from swarm.eval.trained import trained_topology

        topo, swarm_method = trained_topology(topo, s.trained, alphas), "swarm-trained"
    order = [a.name for a in topo.ordered_agents()]
    if len(order) < 3:
        raise SwarmError(f"modularity needs at least 3 agents, {s.topology} has {len(order)}")
    keep = [order[0], order[-1]]
    removed = order[1:-1]
    newcomer_of = removed[-1]
    newcomer = f"{newcomer_of}-new"
    test, train = held_out_items(s.per_cell, IN_DOMAIN_FAMILIES), training_items(s.train)
    rec = out / "records"
    began = time.monotonic()
    swarm = None
    phases: dict[str, dict] = {}
    refusals: dict[str, str] = {}
    retrain_cost: dict = {}
    with private_ray(s.address):
        try:
            swarm = launch(topo, address=s.address, name=f"mod-{uuid.uuid4().hex[:8]}")
            labels_train, _ = collect_labels(swarm, train, rec / "train", progress=say)
            labels_test, _ = collect_labels(swarm, test, rec / "test", progress=say)
            t = time.monotonic()
            trained0 = {r: new_router(r, s.seed).fit(train, labels_train, order) for r in ROUTERS}
            fit_s0 = time.monotonic() - t

            def phase(name: str, methods: dict) -> None:
                costs = agent_costs(swarm)
                methods = {"oracle": Routed("oracle", Oracle(labels_test)), swarm_method: SelfRouting(swarm_method), **methods}
                runs = {m: {a: run_method(meth, swarm, test, a, rec / name, progress=say) for a in alphas} for m, meth in methods.items()}
                phases[name] = {"agents": costs, "records": runs}

            phase("before", {r: Routed(r, trained0[r]) for r in ROUTERS})

            for agent in removed:
                swarm.remove_agent(agent)
            say(f"removed {', '.join(removed)}: pool {', '.join(swarm.entries())}")
            pool = agent_costs(swarm)
            _refusals(trained0, test, pool, "removed", refusals)
            retrained = {r: new_router(r, s.seed).fit(train, labels_train, list(pool)) for r in ROUTERS}
            phase("removed", {**{f"stale-{r}": Routed(f"stale-{r}", StaleRouter(trained0[r])) for r in ROUTERS},
                              **{f"retrained-{r}": Routed(f"retrained-{r}", retrained[r]) for r in ROUTERS}})

            swarm.add_agent(topo.agent(newcomer_of).model_copy(update={"name": newcomer}))
            say(f"added {newcomer}: pool {', '.join(swarm.entries())}")
            pool = agent_costs(swarm)
            _refusals(trained0, test, pool, "added", refusals)
            t = time.monotonic()  # retraining for the newcomer: its forced answers to every training item, then a fit
            new_train = run_method(Forced(newcomer), swarm, train, 0.5, rec / "train", progress=say)
            label_s = time.monotonic() - t
            for r in new_train:
                labels_train[r.query_id][newcomer] = r.correct
            for r in run_method(Forced(newcomer), swarm, test, 0.5, rec / "test", progress=say):
                labels_test[r.query_id][newcomer] = r.correct
            t = time.monotonic()
            retrained = {r: new_router(r, s.seed).fit(train, labels_train, list(pool)) for r in ROUTERS}
            retrain_cost = {"new_agent": newcomer, "label_items": len(train), "label_model_seconds": sum(r.model_seconds for r in new_train),
                            "label_tokens": sum(r.tokens for r in new_train), "label_wall_s": label_s,
                            "fit_wall_s_all_routers": time.monotonic() - t, "first_fit_wall_s_all_routers": fit_s0}
            phase("added", {**{f"stale-{r}": Routed(f"stale-{r}", StaleRouter(trained0[r])) for r in ROUTERS},
                            **{f"retrained-{r}": Routed(f"retrained-{r}", retrained[r]) for r in ROUTERS}})
        finally:
            if swarm is not None:
                swarm.shutdown()

    summary = {
        "experiment": "modularity", "title": "modularity: 4 agents -> 2 -> 2 + a new one, no agent retrained",
        "setup": (f"topology {s.topology}{_variant(s)}; test: {len(test)} in-domain items ({s.per_cell} per family x difficulty of held_out(0, 200)); "
                  f"routers trained on {len(train)} items of training_stream(0); removed {', '.join(removed)} (gracefully), then added "
                  f"{newcomer} (a copy of {newcomer_of}'s spec under a new name); seed {s.seed}"),
        "alphas": list(alphas), "topology": topo.model_dump(mode="json"), "seconds": time.monotonic() - began,
        "settings": {"per_cell": s.per_cell, "train": s.train, "seed": s.seed},
        "kept": keep, "removed": removed, "added": newcomer, "stale_refusals": refusals, "retraining_cost": retrain_cost, "phases": {},
    }
    for name, ph in phases.items():
        agents = list(ph["agents"])
        pool_labels = {q: {a: row[a] for a in agents if a in row} for q, row in labels_test.items()}
        out_ph = {"agents": ph["agents"], "methods": {}}
        for method, by_alpha in ph["records"].items():
            out_ph["methods"][method] = {}
            for a, recs in by_alpha.items():
                oracle_u = metrics.utility(ph["records"]["oracle"][a], a)
                m = metrics.summarize(recs, a, agents, pool_labels, oracle_utility=oracle_u)
                m.pop("easy_hard", None)
                out_ph["methods"][method][f"{a:g}"] = m
        summary["phases"][name] = out_ph
    return write(summary, out)


def _refusals(routers, items, pool, phase, out) -> None:
    for name, router in routers.items():
        try:
            router.choose(items[:1], 0.5, pool)
            out[f"{phase}/{name}"] = "routed (no refusal)"
        except ValueError as exc:
            out[f"{phase}/{name}"] = f"refused: {exc}"


def markdown(summary: dict) -> str:
    a = f"{summary['alphas'][len(summary['alphas']) // 2]:g}"
    phases = list(summary["phases"])
    methods = list(dict.fromkeys(m for ph in summary["phases"].values() for m in ph["methods"]))
    lines = [f"# {summary['title']}", "", summary["setup"], "",
             f"utility / accuracy / cost at alpha {a} (paper cost); '-' where the method does not apply", "",
             "| method | " + " | ".join(f"{p} ({', '.join(summary['phases'][p]['agents'])})" for p in phases) + " |",
             "|---" * (1 + len(phases)) + "|"]
    for m in methods:
        cells = []
        for p in phases:
            r = summary["phases"][p]["methods"].get(m, {}).get(a)
            cells.append("-" if r is None else f"{r['utility']:.3f} / {r['accuracy']:.3f} / {r['cost']:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for p, ph in summary["phases"].items():
        for swarm, by_alpha in ph.get("swarms_versus_best_stale_router", {}).items():
            g = by_alpha.get(a)
            if g is not None:
                lines.append(f"\n{p}: {swarm} minus the best stale router ({g['router']}) at alpha {a}: {g['gap']:+.3f} utility "
                             f"(95% paired bootstrap interval {g['ci95'][0]:+.3f} to {g['ci95'][1]:+.3f}).")
    lines += ["", "Stale routers asked to route among the changed pool:", ""]
    lines += [f"- {k}: {v}" for k, v in summary["stale_refusals"].items()]
    c = summary["retraining_cost"]
    if c:
        paid = (f"${c['label_dollars']:.2f} of recorded calls" if "label_dollars" in c
                else f"{c['label_wall_s']:.1f} s wall, {c['label_tokens']:,} tokens")
        lines += ["", (f"Retraining for {c['new_agent']}: its forced answers to {c['label_items']} training items "
                      f"({paid}), then fitting the three routers "
                      f"({c['fit_wall_s_all_routers']:.1f} s). The swarm's agents: nothing.")]
    return "\n".join(lines) + "\n"


def routing_png(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = f"{summary['alphas'][len(summary['alphas']) // 2]:g}"
    agents = list(dict.fromkeys(x for ph in summary["phases"].values() for x in ph["agents"]))
    bars = [(p, m) for p, ph in summary["phases"].items() for m in ph["methods"] if m != "oracle"]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.45 * len(bars) + 2.5), 4.8))
    for x, (p, m) in enumerate(bars):
        bottom = 0.0
        for k, agent in enumerate(agents):
            share = summary["phases"][p]["methods"][m][a]["routing"].get(agent, 0.0)
            ax.bar(x, share, bottom=bottom, color=plt.cm.viridis(k / max(1, len(agents) - 1)), label=agent if x == 0 else None)
            bottom += share
    ax.set_xticks(range(len(bars)), [f"{p}\n{m}" for p, m in bars], fontsize=6, rotation=90)
    ax.set(ylabel="share of queries answered", ylim=(0, 1), title=f"modularity: who answers, per pool and method (alpha {a})")
    handles = [plt.Rectangle((0, 0), 1, 1, color=plt.cm.viridis(k / max(1, len(agents) - 1))) for k in range(len(agents))]
    ax.legend(handles, agents, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(summary: dict, out: Path) -> list[Path]:
    from swarm.eval.report import write_outputs

    return write_outputs(out, "modularity", summary, markdown(summary), {"routing": lambda p: routing_png(summary, p)})
