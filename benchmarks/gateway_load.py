"""Gateway load: sustained traffic through the HTTP gateway against the same traffic through the Python API.

One run, on a fresh local Ray cluster with the quickstart replay swarm (3 agents):

1. Python API: `clients` asyncio tasks in this process, each asking `Swarm.ask_async` in a loop
   for `duration` seconds (after a warm-up), questions drawn from the replay table;
2. HTTP gateway: the same number of clients, each an HTTP/1.1 keep-alive connection (aiohttp,
   which Ray already depends on; httpx's pool spent a whole core on itself at 200 connections)
   posting /v1/chat/completions with an API key, same questions, same duration.

For each side: throughput of answered queries, p50/p95/p99 latency, errors by kind (HTTP status
or QueryError class; a 200 without an answer counts as `bad_body`), and lost requests: requests
that ended with no outcome at all (a dropped connection, a client timeout, a task that never
finished). Lost must be 0. The load generator runs on the same 2 cores as the swarm and the
gateway, so it competes with what it measures; both sides pay that alike.

Run:  python benchmarks/gateway_load.py [--quick] [--clients 200] [--duration 60] [--out benchmarks/results/gateway_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # before swarm is imported: keep agent logs quiet
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
import ray  # noqa: E402

from benchmarks.hop_overhead import format_table, machine_info, percentile  # noqa: E402
from swarm.api import launch  # noqa: E402
from swarm.backends.replay import ReplayTable  # noqa: E402
from swarm.client import Answer  # noqa: E402
from swarm.errors import QueryError  # noqa: E402
from swarm.gateway import GatewaySettings, serve  # noqa: E402
from swarm.logging import configure_logging  # noqa: E402
from swarm.topology import load_topology  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchmark-key-" + "0" * 24
NAME = "gwload"
Outcome = str  # "ok", an error kind, or "lost"


async def drive(send: Callable[[str], Awaitable[Outcome]], questions: list[str], clients: int, warmup_s: float, duration_s: float,
                grace_s: float) -> dict:
    """`clients` loops sending back to back; counts what started inside the measured window."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    window = (start + warmup_s, start + warmup_s + duration_s)
    records: list[tuple[float, float, Outcome]] = []
    started = 0

    async def client(i: int) -> None:
        nonlocal started
        rng = random.Random(i)
        while loop.time() < window[1]:
            t0 = loop.time()
            started += t0 >= window[0]
            try:
                outcome = await send(rng.choice(questions))
            except Exception as exc:  # noqa: BLE001 - anything without an outcome is a lost request
                outcome = "lost:" + type(exc).__name__
            records.append((t0, loop.time(), outcome))

    tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
    _, unfinished = await asyncio.wait(tasks, timeout=warmup_s + duration_s + grace_s)
    for t in unfinished:
        t.cancel()
    measured = [r for r in records if r[0] >= window[0]]
    ok = [t1 - t0 for t0, t1, o in measured if o == "ok"]
    errors = Counter(o for _, _, o in measured if o != "ok" and not o.startswith("lost"))
    lost = sum(o.startswith("lost") for _, _, o in measured) + (started - len(measured))
    ms = sorted(x * 1000 for x in ok)
    return {
        "clients": clients, "duration_s": duration_s, "started": started, "answered": len(ok),
        "throughput_qps": sum(1 for t0, t1, o in measured if o == "ok" and t1 <= window[1]) / duration_s,
        "p50_ms": percentile(ms, 0.5), "p95_ms": percentile(ms, 0.95), "p99_ms": percentile(ms, 0.99),
        "errors": dict(errors), "lost": lost, "lost_kinds": dict(Counter(o for _, _, o in measured if o.startswith("lost"))),
    }


def api_sender(s) -> Callable[[str], Awaitable[Outcome]]:
    async def send(q: str) -> Outcome:
        try:
            a = await s.ask_async(q, scenario="balance")
        except QueryError as exc:
            return type(exc).__name__
        return "ok" if isinstance(a, Answer) and a.text else "bad_body"

    return send


def http_sender(client: aiohttp.ClientSession, url: str) -> Callable[[str], Awaitable[Outcome]]:
    async def send(q: str) -> Outcome:
        async with client.post(url, json={"model": f"{NAME}:balance", "messages": [{"role": "user", "content": q}]}) as r:
            if r.status != 200:
                await r.read()
                return f"http_{r.status}"
            body = await r.json()
        return "ok" if body["choices"][0]["message"]["content"] and body["swarm"]["agent"] else "bad_body"

    return send


async def measure(s, gateway, questions: list[str], args) -> dict:
    grace = s.topology.defaults.deadline_s + 10
    out = {"api": await drive(api_sender(s), questions, args.clients, args.warmup, args.duration, grace)}
    connector = aiohttp.TCPConnector(limit=args.clients)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=grace), headers=headers) as client:
        send = http_sender(client, gateway.url + "/v1/chat/completions")
        out["gateway"] = await drive(send, questions, args.clients, args.warmup, args.duration, grace)
    return out


def table_rows(r: dict) -> list[dict]:
    api, gw = r["api"], r["gateway"]

    def row(name: str, value, baseline=None, goal: str = "", met=None) -> dict:
        ratio = value / baseline if isinstance(value, (int, float)) and baseline else None
        return {"measurement": name, "value": value, "baseline": baseline, "ratio": ratio, "goal": goal, "met": met}

    rows = [
        row(f"throughput, {gw['clients']} clients (q/s; gateway vs Python API)", gw["throughput_qps"], api["throughput_qps"]),
        row("latency p50 (ms)", gw["p50_ms"], api["p50_ms"]),
        row("latency p95 (ms)", gw["p95_ms"], api["p95_ms"]),
        row("latency p99 (ms)", gw["p99_ms"], api["p99_ms"]),
        row("requests started in the window", gw["started"], api["started"]),
        row("errors (gateway; Python API in baseline)", sum(gw["errors"].values()), sum(api["errors"].values())),
    ]
    for kind in sorted(set(gw["errors"]) | set(api["errors"])):
        rows.append(row(f"  errors: {kind}", gw["errors"].get(kind, 0), api["errors"].get(kind, 0)))
    rows.append(row("lost requests (gateway; Python API in baseline)", gw["lost"], api["lost"], "0", gw["lost"] == 0 and api["lost"] == 0))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 clients for 10 s a side")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--duration", type=float, help="measured seconds per side")
    parser.add_argument("--warmup", type=float, help="seconds of load before measuring")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gateway_load.json")
    args = parser.parse_args(argv)
    args.clients = args.clients or (50 if args.quick else 200)
    args.duration = args.duration or (10.0 if args.quick else 60.0)
    args.warmup = args.warmup if args.warmup is not None else (2.0 if args.quick else 5.0)
    configure_logging()
    info = machine_info(args.quick)
    began = time.perf_counter()
    print(f"gateway load benchmark: {args.clients} clients, {args.duration:g} s a side, on {info['cpu_count']} CPUs, ray {info['ray_version']}",
          flush=True)

    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    topo = load_topology(ROOT / "topologies" / "quickstart-replay.yaml").model_copy(update={"name": NAME})
    s = launch(topo)
    gateway = None
    try:
        settings = GatewaySettings(port=0, api_keys=(KEY,), rate_per_s=1e6, burst=1_000_000, max_in_flight=1024, max_queue=4096,
                                   max_in_flight_per_key=1024, max_connections=1024)  # measure the gateway, not its caps
        gateway = serve(NAME, settings)
        questions = ReplayTable.load(topo.agents[0].backend.table).queries()
        results = asyncio.run(measure(s, gateway, questions, args))
    finally:
        if gateway is not None:
            gateway.stop()
        s.shutdown()
        ray.shutdown()
    info["loadavg_end"] = list(os.getloadavg())
    info["wall_s"] = time.perf_counter() - began

    rows = table_rows(results)
    print()
    print(format_table(rows))
    print(f"\nwall {info['wall_s']:.0f} s; load average {info['loadavg_start'][0]:.1f} at start, {info['loadavg_end'][0]:.1f} at end")
    from swarm.eval.summary import write_summary

    write_summary(args.out, ROOT, format_table(rows), {"run": info, "args": {k: str(v) for k, v in vars(args).items()},
                                                       **results, "table": rows},
                  program=__file__, args=argv)
    print(f"wrote {args.out}")
    lost = results["api"]["lost"] + results["gateway"]["lost"]
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
