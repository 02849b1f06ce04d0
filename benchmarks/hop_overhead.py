"""Hop overhead: what routing a query through swarm agents costs over bare Ray actor calls.

One run, on a fresh local Ray cluster, measures:

1. bare call: an async actor awaiting another async actor (payload as large as a swarm query
   message), timed inside the caller: median and p99;
2. swarm per-hop overhead: a 5-agent replay cascade in which m1..m4 reject every query (p = 0)
   and m5 always answers, so each query makes 4 hops, against a 1-agent swarm (0 hops), both
   timed end to end from the driver with `Swarm.ask`; per hop = (median 5 - median 1) / 4.
   The same formula on a bare chain of 5 plain async actors (actor i awaits actor i+1) gives
   the fair baseline; the bare call is the other one;
3. throughput with 1, 16 and 64 queries in flight: `Swarm.ask_many` through the 5-agent swarm
   against the driver keeping as many calls in flight through the bare 5-actor chain;
4. in-memory scale (no Ray): routing throughput on 1,000 and 100 AgentNodes on the memory
   transport, and the synchronous gossip rounds it takes until every node knows a newly joined
   agent as alive (right after bootstrap, and in steady state once the bootstrap news is spent).

Latencies are measured in interleaved blocks (each series in turn) so that load from other
processes on the machine falls on every series alike; every series is warmed up first.

Run:  python benchmarks/hop_overhead.py [--quick] [--out benchmarks/results/hop_overhead.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # before swarm is imported: keep agent logs quiet

import ray  # noqa: E402
import yaml  # noqa: E402

from swarm.api import Swarm, launch  # noqa: E402
from swarm.client import new_query  # noqa: E402
from swarm.eval.summary import write_summary  # noqa: E402
from swarm.logging import configure_logging  # noqa: E402
from swarm.node import NodeConfig  # noqa: E402
from swarm.protocol import Result, encode, expect  # noqa: E402
from swarm.testing import MemorySwarm, ScriptedBackend  # noqa: E402
from swarm.topology import Topology, parse_topology  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CASCADE = ("m1", "m2", "m3", "m4", "m5")
HOPS = len(CASCADE) - 1
CONCURRENCY = (1, 16, 64)
PER_HOP_GOAL = 1.5  # swarm per-hop overhead at most 1.5x a bare actor-to-actor call
THROUGHPUT_GOAL = 0.70  # swarm throughput at least 70% of the bare chain's


@dataclass(frozen=True)
class Counts:
    warmup: int = 50  # calls discarded before each series
    latency_calls: int = 1000  # measured calls per latency series
    block: int = 100  # calls per interleaved block
    throughput_queries: dict[int, int] = field(default_factory=lambda: {1: 300, 16: 1500, 64: 2000})
    throughput_reps: int = 2  # alternating runs per side and concurrency; the best is reported
    mem_agents: tuple[int, ...] = (1000, 100)
    mem_queries: int = 2000
    mem_concurrency: int = 64
    max_gossip_rounds: int = 150  # cap for a join in steady state (expected: about log2 n rounds)
    bootstrap_join_max_rounds: int = 60  # cap for a join right after bootstrap, which is far slower
    inproc_queries: int = 2000


FULL = Counts()
QUICK = Counts(
    latency_calls=200, block=50, throughput_queries={1: 100, 16: 300, 64: 400}, throughput_reps=1,
    mem_queries=500, max_gossip_rounds=80, bootstrap_join_max_rounds=20, inproc_queries=300,
)


# ---------------------------------------------------------------- small helpers


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 1]."""
    s = sorted(values)
    if not s:
        return math.nan
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_stats(seconds: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in seconds]
    return {
        "n": len(ms), "median_ms": statistics.median(ms), "p99_ms": percentile(ms, 0.99),
        "mean_ms": statistics.fmean(ms), "min_ms": min(ms),
    }


def timed_calls(call: Callable[[], object]) -> Callable[[int], list[float]]:
    """A series runner: make `n` blocking calls, return each one's latency in seconds."""

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            out.append(time.perf_counter() - t0)
        return out

    return run


def interleaved(series: dict[str, Callable[[int], list[float]]], counts: Counts) -> dict[str, list[float]]:
    """Warm every series up, then measure them in rotating blocks so that noise hits all alike."""
    for run in series.values():
        run(counts.warmup)
    names = list(series)
    out: dict[str, list[float]] = {name: [] for name in names}
    blocks = math.ceil(counts.latency_calls / counts.block)
    for b in range(blocks):
        n = min(counts.block, counts.latency_calls - b * counts.block)
        for name in names[b % len(names):] + names[: b % len(names)]:
            out[name] += series[name](n)
    return out


def machine_info(quick: bool) -> dict:
    return {
        "cpu_count": os.cpu_count(), "ray_version": ray.__version__, "python_version": platform.python_version(),
        "platform": platform.platform(), "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick, "loadavg_start": list(os.getloadavg()),
    }


# ---------------------------------------------------------------- bare Ray actors (the baseline)


@ray.remote(num_cpus=0)
class Echo:
    async def echo(self, data: bytes) -> bytes:
        return data


@ray.remote(num_cpus=0)
class Caller:
    """Times calls to a peer from inside an async actor, as an agent forwarding a query would."""

    def __init__(self, peer) -> None:
        self.peer = peer

    async def timed_calls(self, payload: bytes, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await self.peer.echo.remote(payload)
            out.append(time.perf_counter() - t0)
        return out


@ray.remote(num_cpus=0)
class ChainLink:
    """One plain actor of a bare chain: awaits the next link, as a rejecting agent awaits its next hop."""

    def __init__(self, nxt=None) -> None:
        self.nxt = nxt

    async def call(self, data: bytes) -> bytes:
        if self.nxt is None:
            return data
        return await self.nxt.call.remote(data)


def build_chain(length: int):
    """Create `length` linked actors; returns the head (the one the driver calls)."""
    head = None
    for _ in range(length):
        head = ChainLink.remote(head)
    ray.get(head.call.remote(b"up"))
    return head


def chain_throughput(head, payload: bytes, n: int, concurrency: int) -> float:
    """Queries/s through a bare chain with `concurrency` calls kept in flight by the driver."""
    pending: list = []
    sent = done = 0
    t0 = time.perf_counter()
    while done < n:
        while sent < n and len(pending) < concurrency:
            pending.append(head.call.remote(payload))
            sent += 1
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            ray.get(ref)
            done += 1
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------------------- the swarms under test


def write_replay_table(directory: Path, n: int = 200) -> tuple[Path, list[str]]:
    """m1..m4 have competence 0 on every query (they always reject); m5 knows every answer."""
    rows, texts = [], []
    for i in range(n):
        a, b = 100 + i, 7 * i + 3
        text = f"What is {a} + {b}?"
        agents = {m: {"answer": "The answer is: 0", "correct": False, "p": 0.0} for m in CASCADE[:-1]}
        agents[CASCADE[-1]] = {"answer": f"The answer is: {a + b}", "correct": True, "p": 1.0}
        rows.append({"id": f"q{i}", "query": text, "gold": str(a + b), "agents": agents})
        texts.append(text)
    path = directory / "hop-overhead-replay.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path, texts


def cascade_topology(name: str, agents: tuple[str, ...], table: Path) -> Topology:
    specs = []
    for rank, agent in enumerate(agents):
        spec = {"name": agent, "cost": round(0.1 + 0.2 * CASCADE.index(agent), 2), "backend": {"kind": "replay", "table": table.name}}
        if rank == len(agents) - 1:
            spec["policy"] = {"kind": "always_answer"}
        specs.append(spec)
    text = yaml.safe_dump({"name": name, "routing": "cascade", "agents": specs, "defaults": {"deadline_s": 60, "max_hops": 8}})
    return parse_topology(text, source=f"<{name}>", base_dir=table.parent)


def check_route(swarm: Swarm, text: str, hops: int) -> None:
    answer = swarm.ask(text)
    if answer.agent != CASCADE[-1] or answer.hops != hops:
        raise RuntimeError(f"swarm {swarm.name}: expected {hops} hops ending at {CASCADE[-1]}, got path {answer.path}")


def swarm_throughput(swarm: Swarm, texts: Iterator[str], n: int, concurrency: int) -> tuple[float, int]:
    batch = [next(texts) for _ in range(n)]
    t0 = time.perf_counter()
    outcomes = swarm.ask_many(batch, concurrency=concurrency)
    rate = n / (time.perf_counter() - t0)
    return rate, sum(isinstance(o, Exception) for o in outcomes)


# ---------------------------------------------------------------- parts 1-3: on Ray


def measure_ray(counts: Counts) -> dict:
    t_init = time.perf_counter()
    # "local": a fresh cluster of our own even if another process runs one on this machine.
    ray.init(address="local", include_dashboard=False)
    init_s = time.perf_counter() - t_init
    with tempfile.TemporaryDirectory(prefix="hop-overhead-") as tmp:
        table, texts = write_replay_table(Path(tmp))
        t_launch = time.perf_counter()
        swarm5 = launch(cascade_topology("hop-overhead-5", CASCADE, table))
        swarm1 = launch(cascade_topology("hop-overhead-1", CASCADE[-1:], table))
        launch_s = time.perf_counter() - t_launch
        try:
            return {"ray_init_s": init_s, "swarm_launch_s": launch_s, **_measure_ray(counts, swarm5, swarm1, texts)}
        finally:
            swarm5.shutdown()
            swarm1.shutdown()
            ray.shutdown()


def _measure_ray(counts: Counts, swarm5: Swarm, swarm1: Swarm, texts: list[str]) -> dict:
    check_route(swarm5, texts[0], HOPS)
    check_route(swarm1, texts[0], 0)
    payload_size = len(encode(new_query(texts[0], 0.5, 60.0, 8, 32768)))
    payload = os.urandom(payload_size)
    caller = Caller.remote(Echo.remote())
    chain5, chain1 = build_chain(len(CASCADE)), build_chain(1)
    cycle5, cycle1 = itertools.cycle(texts), itertools.cycle(texts)

    print(f"latency: {counts.latency_calls} calls per series after {counts.warmup} warm-up calls ...", flush=True)
    lat = interleaved({
        "bare_call": lambda n: ray.get(caller.timed_calls.remote(payload, n)),
        "bare_chain_1": timed_calls(lambda: ray.get(chain1.call.remote(payload))),
        "bare_chain_5": timed_calls(lambda: ray.get(chain5.call.remote(payload))),
        "swarm_1": timed_calls(lambda: swarm1.ask(next(cycle1))),
        "swarm_5": timed_calls(lambda: swarm5.ask(next(cycle5))),
    }, counts)
    stats = {name: latency_stats(values) for name, values in lat.items()}
    swarm_hop = (stats["swarm_5"]["median_ms"] - stats["swarm_1"]["median_ms"]) / HOPS
    chain_hop = (stats["bare_chain_5"]["median_ms"] - stats["bare_chain_1"]["median_ms"]) / HOPS

    print("throughput ...", flush=True)
    throughput = {}
    for c in CONCURRENCY:
        n = counts.throughput_queries[c]
        swarm5.ask_many([next(cycle5) for _ in range(counts.warmup)], concurrency=c)
        chain_throughput(chain5, payload, counts.warmup, c)
        bare_runs, swarm_runs, errors = [], [], 0
        for _ in range(counts.throughput_reps):
            bare_runs.append(chain_throughput(chain5, payload, n, c))
            rate, failed = swarm_throughput(swarm5, cycle5, n, c)
            swarm_runs.append(rate)
            errors += failed
        throughput[c] = {"queries": n, "swarm_qps": max(swarm_runs), "bare_chain_qps": max(bare_runs),
                         "swarm_runs": swarm_runs, "bare_runs": bare_runs, "swarm_errors": errors}
        print(f"  c={c}: swarm {max(swarm_runs):.0f} q/s, bare chain {max(bare_runs):.0f} q/s", flush=True)

    return {
        "payload_bytes": payload_size,
        "latency": stats,
        "swarm_per_hop_ms": swarm_hop,
        "bare_chain_per_hop_ms": chain_hop,
        "per_hop_vs_bare_call": swarm_hop / stats["bare_call"]["median_ms"],
        "per_hop_vs_bare_chain": swarm_hop / chain_hop if chain_hop > 0 else math.nan,
        "throughput": throughput,
    }


# ---------------------------------------------------------------- part 4: in-memory scale (no Ray)


async def inproc_per_hop(n_queries: int) -> dict:
    """The swarm code's own CPU cost per hop: the same 5-agent cascade on the memory transport."""
    out = {}
    for agents in (CASCADE, CASCADE[-1:]):
        ms = MemorySwarm()
        texts = [f"in-process query {i}" for i in range(n_queries)]
        for i, name in enumerate(agents):
            last = i == len(agents) - 1
            ms.node(name, 0.1 + 0.2 * i, ScriptedBackend({t: "The answer is: 1" for t in texts} if last else {}))
        await ms.start_all(background=False)
        entry = agents[0]
        wires = [encode(new_query(t, 0.5, 30.0, 8, 32768)) for t in texts]
        for w in wires[:50]:
            await ms.network.deliver(entry, w)
        t0 = time.perf_counter()
        for w in wires:
            await ms.network.deliver(entry, w)
        out[len(agents)] = (time.perf_counter() - t0) / n_queries * 1000
    return {"query_ms_5": out[5], "query_ms_1": out[1], "per_hop_ms": (out[5] - out[1]) / HOPS}


async def build_memory_swarm(n_agents: int, rng: random.Random) -> tuple[MemorySwarm, dict[str, ScriptedBackend], float]:
    # All agents share one event loop here, so a lock-step gossip round of 1,000 agents takes
    # seconds; the default 2 s membership timeout is meant for real hung peers, not this.
    ms = MemorySwarm(NodeConfig(ping_timeout_s=600.0), max_hops=8)
    backends = {}
    for i in range(n_agents):
        name = f"a{i:04d}"
        backends[name] = ScriptedBackend()
        ms.node(name, round(rng.uniform(0.01, 0.99), 6), backends[name], seed=i)
    t0 = time.perf_counter()
    await ms.start_all(background=False)
    return ms, backends, time.perf_counter() - t0


async def route_memory(ms: MemorySwarm, backends: dict[str, ScriptedBackend], n_queries: int, concurrency: int, rng: random.Random) -> dict:
    """Each query enters at a random agent and is answered 1-5 cascade steps further up."""
    order = [m.name for m in sorted((n.membership.self_entry for n in ms.nodes.values()), key=lambda m: (m.cost, m.name))]
    plan = []
    for j in range(n_queries + 50):
        entry, steps = rng.randrange(0, len(order) - 6), rng.randint(1, 5)
        text = f"scale query {j}"
        backends[order[entry + steps]].answers[text] = f"The answer is: {j}"
        plan.append((order[entry], text, order[entry + steps], steps))
    sem = asyncio.Semaphore(concurrency)

    async def one(entry: str, text: str, answerer: str, steps: int) -> tuple[bool, int]:
        async with sem:
            r = expect(await ms.network.deliver(entry, encode(new_query(text, 0.5, 60.0, ms.client.limits.max_hops, 32768))), Result)
            hops = sum(h.decision not in ("unreachable", "refused") for h in r.trace) - 1
            return r.ok and r.agent == answerer and hops == steps, hops

    await asyncio.gather(*(one(*p) for p in plan[:50]))  # warm-up
    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(*p) for p in plan[50:]))
    wall = time.perf_counter() - t0
    hops = sum(h for _, h in results)
    return {"queries": n_queries, "wall_s": wall, "qps": n_queries / wall, "hops": hops, "hops_per_s": hops / wall,
            "mean_hops": hops / n_queries, "routed_as_planned": sum(ok for ok, _ in results)}


async def gossip_join(ms: MemorySwarm, joiner: str, seed: str, max_rounds: int) -> dict:
    """A new agent joins through one seed; every node then gossips once per round until all know it alive."""
    t0 = time.perf_counter()
    await ms.join(joiner, 0.5, ScriptedBackend(), seeds=[seed], background=False)
    nodes = list(ms.nodes.values())

    def knowing() -> int:
        return sum(1 for n in nodes if (m := n.membership.get(joiner)) is not None and m.state == "alive")

    history = [knowing()]
    while history[-1] < len(nodes) and len(history) <= max_rounds:
        await asyncio.gather(*(n.upkeep.gossip_round() for n in nodes))
        history.append(knowing())
    rounds = len(history) - 1
    return {"rounds": rounds, "converged": history[-1] == len(nodes), "wall_s": time.perf_counter() - t0,
            "nodes": len(nodes), "knowing_per_round": history}


def drain_gossip_news(ms: MemorySwarm) -> float:
    """Spend every node's queued membership news, as a long-running swarm would have by now."""
    t0 = time.perf_counter()
    for node in ms.nodes.values():
        while node.membership.take_updates(len(node.membership.members)):
            pass
    return time.perf_counter() - t0


async def memory_scale(n_agents: int, counts: Counts, seed: int = 0) -> dict:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    ms, backends, boot_s = await build_memory_swarm(n_agents, rng)
    routing = await route_memory(ms, backends, counts.mem_queries, counts.mem_concurrency, rng)
    seed_agent = rng.choice(sorted(ms.nodes))
    result = {"agents": n_agents, "bootstrap_s": boot_s, "routing": routing}
    # Right after bootstrap every node still owes the swarm its whole initial view as gossip news.
    result["join_after_bootstrap"] = await gossip_join(ms, "joiner-early", seed_agent, counts.bootstrap_join_max_rounds)
    result["drain_s"] = drain_gossip_news(ms)
    result["join_steady_state"] = await gossip_join(ms, "joiner", seed_agent, counts.max_gossip_rounds)
    result["total_s"] = time.perf_counter() - t0
    await ms.stop()
    return result


async def measure_memory(counts: Counts) -> dict:
    out: dict = {"in_process_per_hop": await inproc_per_hop(counts.inproc_queries)}
    for n in counts.mem_agents:
        print(f"in-memory swarm of {n} agents ...", flush=True)
        out[str(n)] = await memory_scale(n, counts)
    return out


# ---------------------------------------------------------------- report


def table_rows(r: dict, m: dict) -> list[dict]:
    lat = r["latency"]
    rows = [
        _row("bare actor->actor call, median (ms)", lat["bare_call"]["median_ms"]),
        _row("bare actor->actor call, p99 (ms)", lat["bare_call"]["p99_ms"]),
        _row("bare chain, driver->1 actor, median (ms)", lat["bare_chain_1"]["median_ms"]),
        _row("bare chain, driver->5 actors, median (ms)", lat["bare_chain_5"]["median_ms"]),
        _row("bare chain per hop (ms)", r["bare_chain_per_hop_ms"]),
        _row("swarm 1 agent (0 hops) ask, median (ms)", lat["swarm_1"]["median_ms"]),
        _row("swarm 1 agent (0 hops) ask, p99 (ms)", lat["swarm_1"]["p99_ms"]),
        _row("swarm 5 agents (4 hops) ask, median (ms)", lat["swarm_5"]["median_ms"]),
        _row("swarm 5 agents (4 hops) ask, p99 (ms)", lat["swarm_5"]["p99_ms"]),
        _row("swarm per hop vs bare call (ms)", r["swarm_per_hop_ms"], lat["bare_call"]["median_ms"], f"<= {PER_HOP_GOAL}", upper=PER_HOP_GOAL),
        _row("swarm per hop vs bare chain per hop (ms)", r["swarm_per_hop_ms"], r["bare_chain_per_hop_ms"], f"<= {PER_HOP_GOAL}", upper=PER_HOP_GOAL),
    ]
    for c, t in r["throughput"].items():
        rows.append(_row(f"throughput, {c} in flight (q/s, vs bare chain)", t["swarm_qps"], t["bare_chain_qps"], f">= {THROUGHPUT_GOAL}", lower=THROUGHPUT_GOAL))
    ip = m["in_process_per_hop"]
    rows.append(_row("in-memory 5-agent cascade: swarm code per hop (ms)", ip["per_hop_ms"]))
    for key, s in m.items():
        if key == "in_process_per_hop":
            continue
        n = s["agents"]
        rows.append(_row(f"in-memory {n} agents: routing (q/s)", s["routing"]["qps"]))
        rows.append(_row(f"in-memory {n} agents: routing (hops/s)", s["routing"]["hops_per_s"]))
        for label, k in (("after bootstrap", "join_after_bootstrap"), ("steady state", "join_steady_state")):
            if k in s:
                j = s[k]
                rounds = j["rounds"] if j["converged"] else f">{j['rounds']} ({j['knowing_per_round'][-1]}/{j['nodes']} know)"
                rows.append(_row(f"in-memory {n} agents: join {label}, gossip rounds (vs log2 n)", rounds, math.log2(n), "~ 1-2x" if k == "join_steady_state" else ""))
                rows.append(_row(f"in-memory {n} agents: join {label}, wall (s)", j["wall_s"]))
    return rows


def _row(name: str, value, baseline=None, goal: str = "", upper: float | None = None, lower: float | None = None) -> dict:
    ratio = value / baseline if isinstance(value, (int, float)) and baseline else None
    met = None
    if ratio is not None and upper is not None:
        met = ratio <= upper
    if ratio is not None and lower is not None:
        met = ratio >= lower
    return {"measurement": name, "value": value, "baseline": baseline, "ratio": ratio, "goal": goal, "met": met}


def format_table(rows: list[dict]) -> str:
    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v) or "-"

    header = ["measurement", "value", "baseline", "ratio", "goal", "met?"]
    body = [[r["measurement"], cell(r["value"]), cell(r["baseline"]), cell(r["ratio"]), cell(r["goal"]), cell(r["met"])] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    fmt = lambda line: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: the whole run in under a minute")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hop_overhead.json", help="where to write the JSON summary")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    configure_logging()  # the in-memory swarms log from this process
    info = machine_info(args.quick)
    began = time.perf_counter()

    print(f"hop overhead benchmark ({'quick' if args.quick else 'full'}) on {info['cpu_count']} CPUs, ray {info['ray_version']}", flush=True)
    ray_results = measure_ray(counts)
    memory_results = asyncio.run(measure_memory(counts))
    info["loadavg_end"] = list(os.getloadavg())
    info["wall_s"] = time.perf_counter() - began

    rows = table_rows(ray_results, memory_results)
    print()
    print(format_table(rows))
    print(f"\nwall {info['wall_s']:.0f} s; load average {info['loadavg_start'][0]:.1f} at start, {info['loadavg_end'][0]:.1f} at end")

    write_summary(args.out, ROOT, format_table(rows), {"run": info, "counts": asdict(counts), "ray": ray_results,
                                                       "memory": memory_results, "table": rows},
                  program=__file__, args=argv)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
