"""The live add/remove experiment (`swarm eval live`): a steady stream of queries on a running
swarm while its membership changes.

Queries (in-domain test items, shuffled) are sent at `rate` per second for `duration_s` seconds,
each through `Swarm.ask_async` as a client would (entry at the cheapest live agent; an entry that
died or is leaving is retried at the next). Meanwhile a second handle on the same swarm (`attach`)
changes its membership, from another thread so the stream never pauses:

- at 1/3: a copy of `join_copy_of` joins under a new name (`Swarm.add_agent`; same model, cost);
- at 2/3: `leave` leaves gracefully (`Swarm.remove_agent`: stops taking queries, drains);
- at 5/6: `kill` is killed with no goodbye (`Swarm.kill_agent`); its peers find out by themselves.

Reported per time window (by send time): queries, accuracy, the paper's cost, utility, latency
p50/p95 and the share answered by each agent; overall: lost queries (no answer came back: a
QueryError or an exception; must be 0) and the events with their times. Writes `live.json`,
`live.md`, `live_timeline.png` and the per-query records `records/live.jsonl`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from swarm.errors import QueryError, SwarmError
from swarm.cluster.connect import private_ray
from swarm.eval import metrics
from swarm.eval.data import held_out_items
from swarm.eval.harness import agent_costs, say, to_record
from swarm.eval.records import Record, RecordStore


@dataclass
class LiveSettings:
    topology: Path = Path("topologies/quickstart.yaml")
    duration_s: float = 90.0
    rate: float = 2.0  # queries per second
    alpha: float = 0.5
    windows: int = 9
    join_copy_of: str = "tb-m"  # joins at 1/3 as "<name>-2"
    leave: str = "tb-s"  # leaves gracefully at 2/3
    kill: str = "tb-m"  # killed at 5/6
    seed: int = 0
    address: str | None = None
    trained: Path | None = None  # `swarm train` outputs: run the self-aware swarm (swarm.eval.trained) instead


def run_live(out: Path, s: LiveSettings) -> list[Path]:
    from swarm import attach, launch
    from swarm.topology import load_topology

    topo = load_topology(s.topology)
    method = "swarm-live"
    if s.trained is not None:
        from swarm.eval.trained import trained_topology

        topo, method = trained_topology(topo, s.trained, (s.alpha,)), "swarm-trained-live"
    names = {a.name for a in topo.agents}
    joiner = f"{s.join_copy_of}-2"
    for role, agent in (("join_copy_of", s.join_copy_of), ("leave", s.leave), ("kill", s.kill)):
        if agent not in names:
            raise SwarmError(f"live: {role} names {agent!r}, which is not an agent of {s.topology} ({', '.join(sorted(names))})")
    if s.leave == s.kill:
        raise SwarmError("live: the agent that leaves and the one killed must differ")
    if s.duration_s <= 0 or s.rate <= 0 or s.windows < 1:
        raise SwarmError("live: duration, rate and windows must be positive")
    n = max(1, round(s.duration_s * s.rate))
    pool = held_out_items(25)
    random.Random(s.seed).shuffle(pool)
    items = [pool[i % len(pool)] for i in range(n)]

    swarm = None
    with private_ray(s.address):
        try:
            swarm = launch(topo, address=s.address, name=f"live-{uuid.uuid4().hex[:8]}")
            ctl = attach(swarm.name, address=s.address)
            costs = agent_costs(swarm)
            say(f"swarm {swarm.name} up; {n} queries over {s.duration_s:g} s at {s.rate:g}/s")
            join_spec = topo.agent(s.join_copy_of).model_copy(update={"name": joiner})
            events_plan = [
                (s.duration_s / 3, "join", joiner, lambda: ctl.add_agent(join_spec)),
                (2 * s.duration_s / 3, "leave", s.leave, lambda: ctl.remove_agent(s.leave)),
                (5 * s.duration_s / 6, "kill", s.kill, lambda: ctl.kill_agent(s.kill)),
            ]
            results, events = asyncio.run(_stream(swarm, items, s, events_plan))
        finally:
            if swarm is not None:
                swarm.shutdown()

    costs_all = {**costs, joiner: costs[s.join_copy_of]}
    records, sent = [], []
    for i, (item, (t_sent, outcome)) in enumerate(zip(items, results, strict=True)):
        if isinstance(outcome, BaseException) and not isinstance(outcome, QueryError):
            outcome = QueryError(f"{type(outcome).__name__}: {outcome}", item.id)
        r = to_record(item, method, s.alpha, outcome, costs_all, calls=max(1, len(outcome.path) if not isinstance(outcome, QueryError) else 1))
        records.append(Record(**{**r.__dict__, "query_id": f"{i}:{item.id}"}))
        sent.append(t_sent)
    store = RecordStore(out / "records" / "live.jsonl")
    store.add(records)
    agents = [*costs, joiner]
    summary = summarize_live(records, sent, events, s, agents)
    trained = f" with the self-aware agents of {s.trained}" if s.trained is not None else ""
    summary["setup"] = (f"topology {s.topology}{trained}; {n} in-domain test items (held_out(0, 200), 25 per cell, shuffled with seed {s.seed}) "
                        f"sent at {s.rate:g}/s over {s.duration_s:g} s, alpha {s.alpha:g}; {joiner} (a copy of {s.join_copy_of}) joins at 1/3, "
                        f"{s.leave} leaves at 2/3, {s.kill} is killed at 5/6")
    summary["topology"] = topo.model_dump(mode="json")
    return write_live(summary, records, sent, out)


async def _stream(swarm, items, s: LiveSettings, plan):
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    events: list[dict] = []

    async def one(i, item):
        await asyncio.sleep(max(0.0, t0 + i / s.rate - loop.time()))
        t_sent = loop.time() - t0
        try:
            return t_sent, await swarm.ask_async(item.prompt, alpha=s.alpha)
        except Exception as exc:  # noqa: BLE001 - a lost query, counted and reported
            return t_sent, exc

    async def event(at, kind, agent, fn):
        await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        began = loop.time() - t0
        error = ""
        try:
            await asyncio.to_thread(fn)
        except Exception as exc:  # noqa: BLE001 - reported with the event
            error = f"{type(exc).__name__}: {exc}"
        events.append({"kind": kind, "agent": agent, "at_s": began, "done_s": loop.time() - t0, "error": error})
        say(f"t={began:.1f} s: {kind} {agent} ({loop.time() - t0 - began:.1f} s){' FAILED ' + error if error else ''}")

    queries = [one(i, it) for i, it in enumerate(items)]
    done = await asyncio.gather(*queries, *(event(*e) for e in plan))
    return done[: len(items)], sorted(events, key=lambda e: e["at_s"])


def summarize_live(records: list[Record], sent: list[float], events: list[dict], s: LiveSettings, agents: list[str]) -> dict:
    width = s.duration_s / s.windows
    windows = []
    for w in range(s.windows):
        lo, hi = w * width, (w + 1) * width
        part = [r for r, t in zip(records, sent, strict=True) if lo <= t < hi or (w == s.windows - 1 and t >= hi)]
        ok = [r for r in part if not r.error]
        windows.append({
            "from_s": lo, "to_s": hi, "n": len(part), "lost": len(part) - len(ok),
            "accuracy": metrics.accuracy(part), "cost": metrics.paper_cost(part), "utility": metrics.utility(part, s.alpha),
            "p50_s": metrics.quantile([r.latency_s for r in ok], 0.5), "p95_s": metrics.quantile([r.latency_s for r in ok], 0.95),
            "routing": metrics.routing_distribution(part, agents),
        })
    lost = [r for r in records if r.error]
    return {
        "experiment": "live", "title": "live: a steady stream while an agent joins, one leaves and one is killed",
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "n": len(records), "lost": len(lost), "lost_errors": sorted({r.error for r in lost}),
        "accuracy": metrics.accuracy(records), "cost": metrics.paper_cost(records), "utility": metrics.utility(records, s.alpha),
        "latency": metrics.latency([r for r in records if not r.error]), "events": events, "windows": windows,
        "routing": metrics.routing_distribution(records, agents),
    }


def markdown(summary: dict) -> str:
    ev = "; ".join(f"{e['kind']} {e['agent']} at {e['at_s']:.1f} s (took {e['done_s'] - e['at_s']:.1f} s){' FAILED: ' + e['error'] if e['error'] else ''}"
                   for e in summary["events"])
    lines = [f"# {summary['title']}", "", summary.get("setup", ""), "",
             (f"{summary['n']} queries, **{summary['lost']} lost**; utility {summary['utility']:.3f}, accuracy {summary['accuracy']:.3f}, "
              f"cost {summary['cost']:.3f}, latency p50 {summary['latency']['p50_s']:.2f} s, p95 {summary['latency']['p95_s']:.2f} s."), "",
             f"Events: {ev}.", "",
             "| window (s) | queries | lost | utility | accuracy | cost | p50 s | p95 s | answered by |", "|---|---|---|---|---|---|---|---|---|"]
    for w in summary["windows"]:
        by = ", ".join(f"{a} {v:.2f}" for a, v in w["routing"].items() if v)
        lines.append(f"| {w['from_s']:.0f}-{w['to_s']:.0f} | {w['n']} | {w['lost']} | {w['utility']:.3f} | {w['accuracy']:.3f} | {w['cost']:.3f} "
                     f"| {w['p50_s']:.2f} | {w['p95_s']:.2f} | {by} |")
    return "\n".join(lines) + "\n"


def timeline_png(summary: dict, records: list[Record], sent: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agents = [a for a, v in summary["routing"].items() if a]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for k, agent in enumerate(agents):
        pts = [(t, r.latency_s) for r, t in zip(records, sent, strict=True) if r.agent == agent]
        if pts:
            ax1.scatter(*zip(*pts, strict=True), s=12, color=plt.cm.viridis(k / max(1, len(agents) - 1)), label=f"answered by {agent}")
    lost = [t for r, t in zip(records, sent, strict=True) if r.error]
    if lost:
        ax1.scatter(lost, [0] * len(lost), marker="x", color="red", s=40, label="lost")
    ax1.set(ylabel="end-to-end latency (s)", title=summary["title"])
    ax1.legend(fontsize=8, loc="upper left")
    mids = [(w["from_s"] + w["to_s"]) / 2 for w in summary["windows"]]
    width = summary["windows"][0]["to_s"] - summary["windows"][0]["from_s"]
    ax2.bar(mids, [w["utility"] for w in summary["windows"]], width=width * 0.9, color="tab:blue", alpha=0.7, label="utility per window")
    ax2.set(xlabel="time since the stream began (s)", ylabel=f"utility per window (alpha {summary['settings']['alpha']:g})", ylim=(min(0, *(w["utility"] for w in summary["windows"])), 1))
    ax3 = ax2.twinx()
    ax3.plot(mids, [w["p95_s"] for w in summary["windows"]], "o-", color="tab:orange", label="p95 latency (s)")
    ax3.set_ylabel("p95 latency per window (s)", color="tab:orange")
    ax2.legend(fontsize=8, loc="lower left")
    ax3.legend(fontsize=8, loc="lower right")
    for e in summary["events"]:
        for ax in (ax1, ax2):
            color = {"join": "green", "leave": "orange", "kill": "red"}.get(e["kind"], "black")
            ax.axvline(e["at_s"], color=color, ls="--", lw=1)
            if e["done_s"] - e["at_s"] > 0.2:  # the join's model load, the leaver's drain
                ax.axvspan(e["at_s"], e["done_s"], color=color, alpha=0.08)
        ax1.text(e["at_s"], ax1.get_ylim()[1] * 0.95, f" {e['kind']} {e['agent']}", fontsize=8, va="top")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_live(summary: dict, records: list[Record], sent: list[float], out: Path) -> list[Path]:
    from swarm.eval.report import write_outputs

    return write_outputs(out, "live", {**summary, "sent_s": sent}, markdown(summary),
                         {"timeline": lambda p: timeline_png(summary, records, sent, p)})

