"""Churn soak on real Ray: N replay agents, a steady flood of queries, and one join, graceful leave
or crash every few seconds. Does the swarm lose a query, run one twice, or take long to route
around a crash, and does its memory grow?

One run, on a fresh local Ray cluster:
- a cascade of `--agents` replay agents (the arithmetic replay table, its five columns spread over
  the cascade; the last agent always answers and, like the first two, is never churned, so a
  capable agent always remains);
- the driver keeps `--in-flight` queries in flight (`Swarm.ask_many` in a background thread,
  batch after batch) for `--duration-s` seconds;
- every `--every-s` seconds one event, chosen with a seeded RNG: a new agent joins
  (`add_agent`, half of the events, so the swarm keeps its size), an agent leaves gracefully
  (`remove_agent`), or one is killed (`kill_agent`); each event runs in a thread of its own, so a
  slow join or drain never delays the next one.

Reported beside each other: queries asked, answered, **lost** (a slot with no outcome), **errors**
(a QueryError; with a capable agent always there, every error is a failure), **duplicates** (query
ids answered by more than one execution, counted from every surviving agent's answered ids;
a crashed agent's own answers die with it), **re-routing time** after a crash (from the kill
until every live agent holds the victim dead, after which no query is sent to it: p99 and max
over crashes), and memory: total RSS of the agent processes and its growth after warm-up, counted
over the agents present from warm-up to the end (joins and leaves change the total on purpose).
The CPU share and peak memory of the machine are recorded too.

Run:  python benchmarks/churn.py [--agents 64] [--duration-s 300] [--out benchmarks/results/churn.json]
CI runs `--agents 8 --duration-s 20` (tests/test_churn.py) and asserts 0 lost, 0 errors, 0 duplicates.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # before swarm is imported: keep agent logs quiet

import psutil  # noqa: E402  (comes with ray[default])
import ray  # noqa: E402

from swarm.backends.replay import ReplayTable  # noqa: E402
from swarm.client import Answer  # noqa: E402
from swarm.cluster.swarm import Swarm, launch  # noqa: E402
from swarm.errors import QueryError  # noqa: E402
from swarm.eval.summary import write_summary  # noqa: E402
from swarm.protocol import Status, StatusRequest, encode, expect  # noqa: E402
from swarm.topology import parse_topology  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "topologies" / "data"
PROTECTED = 2  # the first agents are never churned (nor is the last): entries always exist
COLUMNS = ("m1", "m2", "m3", "m4", "m5")


def agent_row(i: int, n: int, name: str | None = None) -> dict:
    """Agent i of n: cost rising along the cascade, its replay column the table's five in turn (so
    a query meets a stronger model within a few hops, as in a pool of replicas)."""
    column = COLUMNS[i % len(COLUMNS)]
    row = {"name": name or f"a{i:03d}", "cost": round(0.05 + 0.9 * i / max(1, n - 1), 4),
           "backend": {"kind": "replay", "table": str(DATA / "arith-replay.jsonl"), "model": column, "latency_ms": 20, "reject_latency_ms": 5}}
    if i == n - 1:
        row["policy"] = {"kind": "always_answer"}
    return row


def topology(n: int, name: str, interval: float = 2.0):
    import json

    rows = "\n".join("  - " + json.dumps(agent_row(i, n)) for i in range(n))
    # Membership timers sized for dozens of Python processes sharing 2 cores: every agent's gossip and
    # pings cost CPU on two processes, and at 64 agents the default (0.5 s / 1 s) rounds alone keep
    # both cores busy. memberlist likewise lengthens its intervals for larger, slower networks.
    text = (f"name: {name}\ndefaults: {{deadline_s: 60, gossip_interval_s: {interval / 2}, ping_interval_s: {interval}, ping_timeout_s: 2.0, "
            f"suspect_timeout_s: 4.0, drain_timeout_s: 10, forget_after_s: 120}}\nagents:\n{rows}\n")
    return parse_topology(text, base_dir=DATA)


@dataclass
class Load:
    """The query flood: batches of ask_many in a thread, every outcome kept."""

    swarm: Swarm
    texts: list[str]
    in_flight: int
    stop: threading.Event = field(default_factory=threading.Event)
    asked: int = 0
    outcomes: list = field(default_factory=list)
    batches: int = 0

    def run(self) -> None:
        for batch in itertools.count():
            if self.stop.is_set():
                return
            texts = [self.texts[(batch * self.in_flight * 2 + i) % len(self.texts)] for i in range(self.in_flight * 2)]
            self.asked += len(texts)
            self.outcomes.extend(self.swarm.ask_many(texts, scenario="balance", concurrency=self.in_flight))
            self.batches += 1


def agent_pids(s: Swarm, skip: dict | None = None) -> dict[str, int]:
    pids = {}
    for name, handle in list(s._handles.items()):
        if skip and name in skip:
            continue
        try:
            pids[name] = ray.get(handle.describe.remote(), timeout=10)["pid"]
        except Exception:  # noqa: BLE001 - an agent churned away meanwhile
            continue
    return pids


def rss_mb(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = psutil.Process(pid).memory_info().rss / 2**20
        except psutil.Error:
            continue
    return out


def views(s: Swarm, names: list[str]) -> dict[str, dict[str, str]]:
    refs = {}
    for name in names:
        handle = s._handles.get(name)
        if handle is not None:
            refs[name] = handle.control.remote(encode(StatusRequest()))
    out = {}
    for name, ref in refs.items():
        try:
            out[name] = {m.name: m.state for m in expect(ray.get(ref, timeout=5), Status).members}
        except Exception:  # noqa: BLE001 - it left or died meanwhile
            continue
    return out


def watch_reroute(s: Swarm, victim: str, killed_at: float, out: list[float], timeout_s: float = 60.0) -> None:
    """Seconds from the kill until every live agent holds the victim dead (or has forgotten it)."""
    while time.monotonic() - killed_at < timeout_s:
        seen = views(s, [n for n in list(s._handles) if n != victim])
        if seen and all(v.get(victim, "dead") in ("dead", "left") for v in seen.values()):
            out.append(time.monotonic() - killed_at)
            return
        time.sleep(0.1)
    out.append(float("inf"))


def soak(agents: int, duration_s: float, every_s: float, in_flight: int, seed: int, warmup_s: float, interval: float = 2.0) -> dict:
    rng = random.Random(seed)
    own = not ray.is_initialized()  # a test brings its own cluster
    if own:
        ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    machine = psutil.Process()
    try:
        began = time.monotonic()
        s = launch(topology(agents, "churn", interval))
        launch_s = time.monotonic() - began
        print(f"{agents} agents up in {launch_s:.1f} s", flush=True)
        texts = [r["query"] for r in ReplayTable.load(DATA / "arith-replay.jsonl").rows]
        load = Load(s, texts, in_flight)
        flood = threading.Thread(target=load.run, daemon=True)
        cpu = psutil.cpu_percent(interval=None)
        flood.start()
        time.sleep(warmup_s)
        warm_pids = agent_pids(s)
        warm_rss = rss_mb(warm_pids)
        print(f"warm: {len(warm_rss)} agents, {sum(warm_rss.values()):.0f} MB", flush=True)
        churnable = lambda: [n for n in s._handles if n not in originals[:PROTECTED] and n != originals[-1]]  # noqa: E731
        originals = [f"a{i:03d}" for i in range(agents)]
        events: list[tuple[float, str, str]] = []
        reroutes: list[float] = []
        watchers: list[threading.Thread] = []
        peaks: list[float] = [0.0]
        sampling = threading.Event()

        def sample() -> None:  # the agents' memory every 10 s, off the event loop of the soak
            pids = dict(warm_pids)
            while not sampling.wait(10.0):
                pids.update(agent_pids(s, skip=pids))
                peaks[0] = max(peaks[0], sum(rss_mb(pids).values()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        joined = itertools.count()
        changing: set[str] = set()
        failed_events: list[str] = []

        def crash(name: str) -> None:
            s.kill_agent(name)
            w = threading.Thread(target=watch_reroute, args=(s, name, time.monotonic(), reroutes), daemon=True)
            w.start()
            watchers.append(w)

        def run_event(action, name: str) -> None:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - reported, the soak goes on
                failed_events.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                changing.discard(name)

        end = time.monotonic() + duration_s
        next_event = time.monotonic() + every_s
        busy: list[threading.Thread] = []
        while time.monotonic() < end:
            time.sleep(max(0.0, next_event - time.monotonic()))
            next_event += every_s
            kind = rng.choice(("join", "join", "leave", "crash"))  # as many arrive as go: the swarm keeps its size
            candidates = [n for n in churnable() if n not in changing]
            t = time.monotonic() - began
            if kind == "join" or len(candidates) < 2:
                kind, name = "join", f"j{next(joined):03d}"
                spec = agent_row(rng.randrange(PROTECTED, agents - 1), agents, name)
                action = lambda spec=spec: s.add_agent(spec)  # noqa: E731
            elif kind == "leave":
                name = rng.choice(candidates)
                action = lambda name=name: s.remove_agent(name, timeout_s=30)  # noqa: E731
            else:
                name = rng.choice(candidates)
                action = lambda name=name: crash(name)  # noqa: E731
            # Each event in a thread of its own, so a slow join or drain never delays the next event.
            changing.add(name)
            thread = threading.Thread(target=run_event, args=(action, name), daemon=True)
            thread.start()
            busy.append(thread)
            events.append((t, kind, name))
            print(f"{t:7.1f} s  {kind:5s} {name}  agents {len(s._handles)}  outcomes so far {len(load.outcomes)}", flush=True)
        for thread in busy:
            thread.join(timeout=60)
        sampling.set()
        sampler.join(timeout=30)
        load.stop.set()
        flood.join(timeout=180)
        for w in watchers:
            w.join(timeout=70)
        cpu = psutil.cpu_percent(interval=None)
        end_rss = rss_mb({n: p for n, p in warm_pids.items() if n in s._handles})
        both = sorted(set(warm_rss) & set(end_rss))
        growth = sum(end_rss[n] for n in both) / max(1e-9, sum(warm_rss[n] for n in both)) - 1 if both else float("nan")
        counts: dict[str, int] = {}
        for handle in s._handles.values():
            for qid in ray.get(handle.answered.remote()):
                counts[qid] = counts.get(qid, 0) + 1
        statuses = s.status()
        outcomes = load.outcomes

        answers = sum(isinstance(o, Answer) for o in outcomes)
        errors = [o for o in outcomes if isinstance(o, QueryError)]
        lost = load.asked - answers - len(errors)  # a batch still out when the run ended counts as lost
        finite = sorted(r for r in reroutes if r != float("inf"))
        summary = {
            "agents": agents, "in_flight": in_flight, "membership_interval_s": interval, "duration_s": duration_s, "every_s": every_s, "seed": seed,
            "launch_s": round(launch_s, 1), "asked": load.asked, "answered": answers, "lost": lost, "errors": len(errors),
            "error_kinds": sorted({f"{type(e).__name__}: {str(e)[-80:]}" for e in errors})[:5],
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "joined_copies": sum(st.duplicates for st in _raw_statuses(s)),
            "events": {k: sum(1 for e in events if e[1] == k) for k in ("join", "leave", "crash")}, "failed_events": failed_events[:5],
            "crashes_rerouted": len(finite), "crashes_not_rerouted": len(reroutes) - len(finite),
            "reroute_p99_s": round(_quantile(finite, 0.99), 2) if finite else None,
            "reroute_max_s": round(max(finite), 2) if finite else None,
            "reroute_median_s": round(statistics.median(finite), 2) if finite else None,
            "rss_warm_mb": round(sum(warm_rss[n] for n in both), 1), "rss_end_mb": round(sum(end_rss[n] for n in both), 1),
            "rss_growth": round(growth, 4), "rss_agents_compared": len(both), "peak_agents_rss_mb": round(peaks[0], 1),
            "machine_memory_used_gb": round(psutil.virtual_memory().used / 2**30, 2), "cpu_percent": cpu,
            "driver_rss_mb": round(machine.memory_info().rss / 2**20, 1), "agents_at_end": len(statuses),
            "queries_per_s": round(len(outcomes) / max(1e-9, duration_s), 1),
        }
        s.shutdown()
        return summary
    finally:
        if own:
            ray.shutdown()


def _raw_statuses(s: Swarm) -> list[Status]:
    out = []
    for handle in s._handles.values():
        try:
            out.append(expect(ray.get(handle.control.remote(encode(StatusRequest())), timeout=10), Status))
        except Exception:  # noqa: BLE001
            continue
    return out


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(r: dict) -> str:
    rows = [
        ("agents (start / end)", f"{r['agents']} / {r['agents_at_end']}"),
        ("queries in flight", r["in_flight"]),
        ("events (join / leave / crash)", f"{r['events']['join']} / {r['events']['leave']} / {r['events']['crash']}"),
        ("queries asked", r["asked"]),
        ("answered", r["answered"]),
        ("lost", r["lost"]),
        ("errors", r["errors"]),
        ("duplicate answers", r["duplicates"]),
        ("copies joined or answered from memory", r["joined_copies"]),
        ("re-routing after a crash: median / p99 / max s", f"{r['reroute_median_s']} / {r['reroute_p99_s']} / {r['reroute_max_s']}"),
        ("crashes never re-routed", r["crashes_not_rerouted"]),
        ("agents' RSS warm -> end (same agents), MB", f"{r['rss_warm_mb']} -> {r['rss_end_mb']} ({r['rss_growth']:+.1%})"),
        ("peak RSS of all agents, MB", r["peak_agents_rss_mb"]),
        ("machine CPU busy over the run", f"{r['cpu_percent']:.0f}%"),
        ("queries per second", r["queries_per_s"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure':{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=300.0)
    parser.add_argument("--every-s", type=float, default=2.0)
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--warmup-s", type=float, default=90.0, help="queries only, before the churn: longer than remember_s (60 s), so memory is at its steady state when growth is measured from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval-s", type=float, default=2.0, help="every agent's gossip and ping interval")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "churn.json")
    args = parser.parse_args(argv)
    if args.agents < PROTECTED + 3:
        parser.error(f"--agents must be at least {PROTECTED + 3}")
    result = soak(args.agents, args.duration_s, args.every_s, args.in_flight, args.seed, args.warmup_s, args.interval_s)
    text = table(result)
    print(text)
    write_summary(args.out, ROOT, text, result, __file__, sys.argv[1:] if argv is None else argv)
    print(f"wrote {args.out}")
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
