"""Speculative forwarding, measured: what passing a query on while the agent still generates buys in
latency and costs in compute, on the testbed swarm (topologies/quickstart-probe.yaml: the quick
ladder's four Qwen2 models, each deciding with a probe; the two-stage decision of the probe policy,
prefill P then the reply's own token confidence, is where an agent generates a reply it may then
reject, so that is where speculation can save time).

One run, on a fresh local Ray cluster, launches the swarm once per arm: `off` as shipped
(speculate: 0) and one arm per band in `--bands`, with `speculate: BAND` on every agent. The same
held-out testbed queries (alpha 0.5) arrive at a fixed offered load (Poisson, `--rate` queries/s,
one arrival schedule for every arm), in blocks that rotate through the arms, each block run to its
end before the next starts, so that load from other processes on the machine falls on every arm
alike and each block's compute is its own arm's. Per arm:

- latency p50/p95 (client wall time of `Swarm.ask_async`), and the ratio to `off`;
- compute: CPU seconds of the arm's agent processes during its blocks (every generation, the
  cancelled copies included), the ratio to `off`; and from the traces, the queries speculated on
  and the speculative copies cancelled (the work wasted), with the time they ran;
- utility (accuracy - alpha x the answering agent's cost), and the share of queries whose result
  (answering agent and text) is the same as `off`'s (speculation must not change it).

Each offered load in `--rates` is one such measurement, on the same swarms; speculation would be
turned on by default only for a band that meets the goal (p95 at most 0.9x off's, compute at most
1.1x, every result the same) at every load.

Run:  python benchmarks/speculation.py [--quick] [--bands 0.05 0.2 1] [--rates 1 3] [--out benchmarks/results/speculation.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # before swarm is imported: keep agent logs quiet
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import ray  # noqa: E402

from benchmarks.hop_overhead import percentile  # noqa: E402
from swarm.api import Swarm, launch  # noqa: E402
from swarm.client import Answer  # noqa: E402
from swarm.eval.data import held_out_items  # noqa: E402
from swarm.logging import configure_logging  # noqa: E402
from swarm.tasks.verify import verify  # noqa: E402
from swarm.topology import Topology, load_topology  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = ROOT / "topologies" / "quickstart-probe.yaml"
ALPHA = 0.5
LATENCY_GOAL = 0.9  # worth turning on by default: p95 at most 0.9x off ...
COMPUTE_GOAL = 1.1  # ... for at most 1.1x the compute, with every result unchanged


def with_band(topo: Topology, name: str, band: float) -> Topology:
    agents = [a.model_copy(update={"policy": topo.policy_for(a).model_copy(update={"speculate": band})}) for a in topo.agents]
    return topo.model_copy(update={"name": name, "agents": agents})


def agent_processes(swarm: Swarm) -> list[psutil.Process]:
    pids = ray.get([ray.get_actor(name, namespace=swarm.namespace).describe.remote() for name in swarm.entries()])
    return [psutil.Process(d["pid"]) for d in pids]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in processes)


async def run_block(swarm: Swarm, items: list, gaps: list[float]) -> list[tuple[float, Answer | Exception]]:
    """Send `items` at the offered load (the arrival gaps given), all in flight at once as they arrive."""
    async def one(item) -> tuple[float, Answer | Exception]:
        t0 = time.perf_counter()
        try:
            answer = await swarm.ask_async(item.prompt, alpha=ALPHA)
        except Exception as exc:  # noqa: BLE001 - a failed query is counted, not fatal
            return time.perf_counter() - t0, exc
        return time.perf_counter() - t0, answer

    tasks = []
    for item, gap in zip(items, gaps):
        await asyncio.sleep(gap)
        tasks.append(asyncio.ensure_future(one(item)))
    return await asyncio.gather(*tasks)


def summarise(rows: list[dict], cpu_s: float) -> dict:
    ok = [r for r in rows if r["ok"]]
    lat = [r["latency_s"] for r in rows]
    n = len(rows)
    return {
        "queries": n, "failed": n - len(ok),
        "p50_s": percentile(lat, 0.5), "p95_s": percentile(lat, 0.95), "mean_s": statistics.fmean(lat),
        "accuracy": sum(r["correct"] for r in rows) / n, "cost": sum(r["cost"] for r in rows) / n,
        "utility": sum(r["correct"] - ALPHA * r["cost"] for r in rows) / n,
        "cpu_s": cpu_s, "cpu_s_per_query": cpu_s / n,
        "speculated": sum(r["speculated"] for r in rows), "copies_cancelled": sum(r["cancelled"] for r in rows),
        "copies_cancelled_s": sum(r["cancelled_s"] for r in rows),
        "model_seconds_per_query": sum(r["model_seconds"] for r in rows) / n,
    }


def row_of(item, latency_s: float, outcome: Answer | Exception) -> dict:
    if isinstance(outcome, Exception):
        return {"id": item.id, "ok": False, "latency_s": latency_s, "correct": False, "cost": 0.0, "agent": "", "text": "",
                "speculated": False, "cancelled": 0, "cancelled_s": 0.0, "model_seconds": 0.0}
    wasted = [h for h in outcome.trace if "speculative copy" in h.detail]
    speculated = bool(wasted) or any(h.detail.startswith("speculated:") for h in outcome.trace)
    return {"id": item.id, "ok": True, "latency_s": latency_s, "correct": verify(item, outcome.text), "cost": outcome.cost,
            "agent": outcome.agent, "text": outcome.text, "speculated": speculated, "cancelled": len(wasted),
            "cancelled_s": sum(h.seconds for h in wasted), "model_seconds": outcome.model_seconds}


async def measure(swarms: dict[str, Swarm], items: list, rate: float, block: int, seed: int) -> dict:
    rng = random.Random(seed)
    gaps = [rng.expovariate(rate) for _ in items]
    procs = {arm: agent_processes(s) for arm, s in swarms.items()}
    rows: dict[str, dict[str, dict]] = {arm: {} for arm in swarms}
    cpu = dict.fromkeys(swarms, 0.0)
    arms = list(swarms)
    for b, start in enumerate(range(0, len(items), block)):
        order = arms[b % len(arms):] + arms[:b % len(arms)]
        for arm in order:
            chunk, chunk_gaps = items[start:start + block], gaps[start:start + block]
            before = cpu_seconds(procs[arm])
            results = await run_block(swarms[arm], chunk, chunk_gaps)
            cpu[arm] += cpu_seconds(procs[arm]) - before
            for item, (latency, outcome) in zip(chunk, results):
                rows[arm][item.id] = row_of(item, latency, outcome)
        done = start + len(items[start:start + block])
        print(f"  {done}/{len(items)} queries per arm", flush=True)
    out = {arm: summarise(list(rows[arm].values()), cpu[arm]) for arm in arms}
    off = rows["off"]
    for arm in arms:
        same = sum(off[i]["agent"] == rows[arm][i]["agent"] and off[i]["text"] == rows[arm][i]["text"] for i in off)
        out[arm]["same_result"] = same / len(items)
    return out


def with_ratios(arms: dict[str, dict]) -> dict[str, dict]:
    """Each arm against `off`, and whether it meets the goal for turning speculation on by default."""
    off = arms["off"]
    for r in arms.values():
        r.update(p50_ratio=r["p50_s"] / off["p50_s"], p95_ratio=r["p95_s"] / off["p95_s"],
                 compute_ratio=r["cpu_s"] / off["cpu_s"] if off["cpu_s"] else math.nan, utility_delta=r["utility"] - off["utility"])
        r["worth_it"] = bool(r["p95_ratio"] <= LATENCY_GOAL and r["compute_ratio"] <= COMPUTE_GOAL and r["same_result"] == 1.0)
    return arms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer queries (a smoke run)")
    ap.add_argument("--bands", type=float, nargs="+", default=[0.05, 0.2, 1.0], help="the `speculate` band of each arm beside `off`")
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 3.0], help="offered loads, queries per second (each a measurement)")
    ap.add_argument("--per-cell", type=int, default=None, help="held-out queries per (family, difficulty) cell")
    ap.add_argument("--block", type=int, default=20, help="queries per alternating block")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speculation.json")
    args = ap.parse_args(argv)
    configure_logging(level="warning")
    per_cell = args.per_cell or (2 if args.quick else 10)
    items = held_out_items(per_cell)
    random.Random(0).shuffle(items)
    topo = load_topology(TOPOLOGY)
    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    t0 = time.perf_counter()
    swarms = {"off": launch(with_band(topo, "spec-off", 0.0), agent_output=False)}
    for k, band in enumerate(args.bands):
        swarms[f"band {band:g}"] = launch(with_band(topo, f"spec-{k}", band), agent_output=False)
    launch_s = time.perf_counter() - t0
    try:
        for s in swarms.values():  # warm-up: every agent's first batch, outside the measurement
            asyncio.run(run_block(s, items[:4], [0.0] * 4))
        measured = {}
        for rate in args.rates:
            print(f"{len(items)} queries per arm at {rate:g} q/s, blocks of {args.block}, arms {', '.join(swarms)} ...", flush=True)
            measured[rate] = asyncio.run(measure(swarms, items, rate, args.block, seed=0))
    finally:
        for s in swarms.values():
            s.shutdown()
        ray.shutdown()
    by_rate = {f"{rate:g}": with_ratios(arms) for rate, arms in measured.items()}
    bands = [arm for arm in swarms if arm != "off"]
    worth = {arm: all(by_rate[r][arm]["worth_it"] for r in by_rate) for arm in bands}
    summary = {
        "benchmark": "speculation", "topology": str(TOPOLOGY.relative_to(ROOT)), "alpha": ALPHA, "bands": args.bands,
        "rates_qps": args.rates, "queries_per_arm": len(items), "block": args.block, "launch_s": launch_s,
        "goal": {"p95_ratio_at_most": LATENCY_GOAL, "compute_ratio_at_most": COMPUTE_GOAL, "same_result": 1.0},
        "by_rate": by_rate, "worth_it": worth, "on_by_default": any(worth.values()),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__,
                    "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "loadavg_end": list(os.getloadavg()),
                    "quick": args.quick},
    }
    print()
    print(f"{'q/s':>4} {'arm':<9} {'p50 s':>6} {'p95 s':>6} {'p50 x':>6} {'p95 x':>6} {'CPU s/q':>7} {'CPU x':>6} {'utility':>7} "
          f"{'same':>6} {'specul.':>7} {'wasted':>6} {'failed':>6}")
    for rate, arms in by_rate.items():
        for arm, r in arms.items():
            print(f"{rate:>4} {arm:<9} {r['p50_s']:>6.3f} {r['p95_s']:>6.3f} {r['p50_ratio']:>6.3f} {r['p95_ratio']:>6.3f} "
                  f"{r['cpu_s_per_query']:>7.3f} {r['compute_ratio']:>6.3f} {r['utility']:>7.3f} {r['same_result']:>6.1%} "
                  f"{r['speculated']:>7} {r['copies_cancelled']:>6} {r['failed']:>6}")
    print(f"goal to turn it on by default, at every load: p95 <= {LATENCY_GOAL}x off for compute <= {COMPUTE_GOAL}x, every "
          f"result the same; met: {summary['on_by_default']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
