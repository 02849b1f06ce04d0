"""Latency through the swarm against its answering agents alone, time to first token through the
gateway, the overhead per hop, and the deadline mode (issue 17).

One run, on a fresh local Ray cluster, on four swarms, at a fixed offered load (queries arrive
`rate` per second, open loop, on the same schedule in every series), alpha 0.5, over the same
held-out testbed items:
- testbed: `topologies/quickstart-probe.yaml`, the quickstart's swarm (the quick ladder tb-xs <
  tb-s < tb-m < tb-l, each deciding with its probe: a rejection costs one prefill or none);
- smollm2: tb-xs and tb-s (probes), then SmolLM2-135M-Instruct (transformers, offline) as the
  strongest agent, which always answers: generation dominates there;
- testbed-prefill, smollm2-prefill: the same swarms with every probe deciding on its prefill alone
  (`confirm: none`, `unfamiliar: prior`, no template required): no rejection generates, and an
  answer streams from its first token; what that costs shows in the unbounded utility.

Series, per swarm:
1. unbounded: each item through the swarm (the topology's deadline): latency, who answered, hops;
2. direct: each item straight to the agent that answered it in (1), which must answer.
   `p50_ratio` / `p95_ratio`: p50 / p95 of (1) over p50 / p95 of (2);
3. `per_hop_ms`: a query's routing overhead is its latency less its agents' model seconds; per
   query with h >= 1 hops, (its overhead in (1) - its overhead in (2)) / h; the median;
4. deadline mode: each item through the swarm again with deadline_s = 1.5 x the p95 in (2) of the
   agent that answered it in (1), `--deadline-repeats` times (3: a run's misses are a few tail events,
   so one run of 80 queries cannot tell 0.975 from 0.99). `deadline_met`: share answered within it,
   over every repeat; lost: share with no answer; utility given up: utility of (1) - the mean utility
   of (4) (the paper's: accuracy - alpha x cost); `deadline.per_repeat`: each repeat's shares, utility,
   forced answers and changed queries (`forced`, `changed`: their totals over the repeats);
   `changed_examples`: queries whose answering agent or correctness the deadline changed, with their traces;
5. time to first token: through the gateway (`stream: true`, to the first SSE chunk with text)
   against straight from the agent that answered it there (`ask_stream_async(entry=...,
   must_answer=True)`, to the first piece). `ttft_ratio`: the median of the two, divided. Beside it,
   to split that ratio in two: the same queries routed through the swarm by the Python client
   (`ask_stream_async`, no HTTP): gateway / client-routed is the gateway's share, client-routed /
   direct the routing's.

Run:  python benchmarks/latency.py [--quick] [--only SWARM ...] [--deadline-repeats 3] [--out benchmarks/results/latency.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("SWARM_LOG_LEVEL", "warning")  # before swarm is imported: keep agent logs quiet

import httpx  # noqa: E402

import swarm  # noqa: E402
from swarm.client import Answer  # noqa: E402
from swarm.cluster.connect import private_ray  # noqa: E402
from swarm.errors import QueryError  # noqa: E402
from swarm.eval import metrics  # noqa: E402
from swarm.eval.data import held_out_items  # noqa: E402
from swarm.eval.harness import to_record  # noqa: E402
from swarm.eval.summary import write_summary  # noqa: E402
from swarm.gateway import GatewaySettings, serve  # noqa: E402
from swarm.tasks.testbed_families import IN_DOMAIN_FAMILIES  # noqa: E402
from swarm.topology import load_topology, parse_topology  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALPHA = 0.5
BUDGET_X = 1.5  # deadline mode: this many times the answering agent's own p95
KEY = "bench-key-" + "k" * 24
GOALS = {"p95_ratio": 1.3, "ttft_ratio": 1.2, "deadline_met": 0.99, "utility_given_up": 0.02}
SMOLLM2 = """name: lat-smollm2
routing: cascade
defaults: {max_hops: 4, deadline_s: 120, drain_timeout_s: 5}
agents:
  - {name: tb-xs, cost: 0.1, backend: {kind: transformers, model: "testbed:quick/tb-xs", max_new_tokens: 80, threads: 1},
     policy: {kind: probe, path: "testbed:quick/tb-xs", require_template: true}}
  - {name: tb-s, cost: 0.353, backend: {kind: transformers, model: "testbed:quick/tb-s", max_new_tokens: 80, threads: 1},
     policy: {kind: probe, path: "testbed:quick/tb-s", require_template: true}}
  - {name: smollm2, cost: 0.9, backend: {kind: transformers, model: "offline:smollm2-135m-instruct", max_new_tokens: 32, threads: 1},
     policy: {kind: always_answer}}
"""


@dataclass(frozen=True)
class Setup:
    name: str
    topology: Callable[[], swarm.Topology]
    items: int
    rate: float  # queries offered per second


def prefill_only(text: str) -> swarm.Topology:
    """The topology with every probe deciding on its prefill alone (confirm none, an unfamiliar query on
    the agent's prior, no template required): a rejection never generates, and an answer streams from its
    first token (README, "Streaming")."""
    import yaml

    doc = yaml.safe_load(text)
    for agent in doc["agents"]:
        if agent.get("policy", {}).get("kind") == "probe":
            agent["policy"].update(confirm="none", unfamiliar="prior", require_template=False)
    doc["name"] += "-prefill"
    return parse_topology(yaml.safe_dump(doc), base_dir=ROOT / "topologies")


def setups(quick: bool) -> list[Setup]:
    quickstart = (ROOT / "topologies" / "quickstart-probe.yaml").read_text(encoding="utf-8")
    return [Setup("testbed", lambda: load_topology(ROOT / "topologies" / "quickstart-probe.yaml"), 16 if quick else 80, 1.0),
            Setup("smollm2", lambda: parse_topology(SMOLLM2, base_dir=ROOT / "topologies"), 6 if quick else 30, 0.4),
            Setup("testbed-prefill", lambda: prefill_only(quickstart), 16 if quick else 80, 1.0),
            Setup("smollm2-prefill", lambda: prefill_only(SMOLLM2), 6 if quick else 30, 0.4)]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def offered(rate: float, jobs: list[Callable[[], Awaitable]]) -> list:
    """Start job k at k / rate seconds (open loop: a slow answer never delays the next arrival); their results in order."""
    began = time.monotonic()

    async def at(k: int, job):
        await asyncio.sleep(max(0.0, began + k / rate - time.monotonic()))
        t0 = time.monotonic()
        try:
            return await job(), time.monotonic() - t0
        except (QueryError, httpx.HTTPError) as exc:  # counted as lost, never dropped
            return exc, time.monotonic() - t0

    return list(await asyncio.gather(*(at(k, job) for k, job in enumerate(jobs))))


async def first_piece(stream) -> tuple[float, Answer]:
    """Time to the first piece of text of a streamed answer, and the Answer."""
    t0, first, answer = time.monotonic(), None, None
    async for item in stream:
        if isinstance(item, str) and item and first is None:
            first = time.monotonic() - t0
        elif isinstance(item, Answer):
            answer = item
    return (first if first is not None else time.monotonic() - t0), answer


async def gateway_first_chunk(http: httpx.AsyncClient, url: str, model: str, text: str) -> tuple[float, str]:
    """Time to the first SSE chunk with text through the gateway, and the agent that answered (the final chunk's `swarm`)."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True, "alpha": ALPHA}
    t0, first, agent = time.monotonic(), None, ""
    async with http.stream("POST", url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if delta.get("content") and first is None:
                first = time.monotonic() - t0
            agent = chunk.get("swarm", {}).get("agent", agent)
    return (first if first is not None else time.monotonic() - t0), agent


def overhead(a: Answer, latency_s: float) -> float:
    return latency_s - a.model_seconds


def quantiles(xs: list[float]) -> dict[str, float]:
    return {"p50_s": metrics.quantile(xs, 0.5), "p95_s": metrics.quantile(xs, 0.95), "n": len(xs)}


async def measure(s: swarm.Swarm, setup: Setup, gateway_url: str, repeats: int = 3) -> dict:
    items = held_out_items(-(-setup.items // 16), IN_DOMAIN_FAMILIES)  # 16 cells: 4 in-domain families x 4 difficulties
    random.Random(0).shuffle(items)
    items = items[: setup.items]
    costs = {a.name: a.cost for a in s.topology.agents}
    texts = [i.prompt for i in items]
    say(f"[{setup.name}] warm-up")
    await offered(setup.rate, [lambda t=t: s.ask_async(t, alpha=ALPHA) for t in texts[:8]])
    for agent in costs:
        await s.ask_async(texts[0], alpha=ALPHA, entry=agent, must_answer=True)

    say(f"[{setup.name}] 1. unbounded, {len(items)} queries at {setup.rate} q/s")
    unbounded = await offered(setup.rate, [lambda t=t: s.ask_async(t, alpha=ALPHA) for t in texts])
    say(f"[{setup.name}] 2. direct to each query's answering agent")
    answered = [(k, a) for k, (a, _) in enumerate(unbounded) if isinstance(a, Answer)]
    direct = await offered(setup.rate, [lambda k=k, a=a: s.ask_async(texts[k], alpha=ALPHA, entry=a.agent, must_answer=True)
                                        for k, a in answered])
    own: dict[str, list[float]] = {}
    for (_, a), (_, lat) in zip(answered, direct):
        own.setdefault(a.agent, []).append(lat)
    own_p95 = {agent: metrics.quantile(v, 0.95) for agent, v in own.items()}
    swarm_lat = [unbounded[k][1] for k, _ in answered]
    direct_lat = [lat for d, lat in direct if isinstance(d, Answer)]
    per_hop = [(overhead(a, unbounded[k][1]) - overhead(d, lat)) / a.hops
               for (k, a), (d, lat) in zip(answered, direct) if a.hops and isinstance(d, Answer)]

    budgets = [BUDGET_X * own_p95[a.agent] for _, a in answered]
    rec_unbounded = [to_record(items[k], "unbounded", ALPHA, a, costs, latency_s=0.0) for k, a in answered]
    u_unbounded = metrics.utility(rec_unbounded, ALPHA)
    runs = []
    for r in range(repeats):  # the same queries and budgets each time: a run's misses are a few tail events
        say(f"[{setup.name}] 4. deadline mode ({r + 1} of {repeats}): {BUDGET_X}x the answering agent's own p95")
        bounded = await offered(setup.rate, [lambda k=k, b=b: s.ask_async(texts[k], alpha=ALPHA, deadline_s=b)
                                             for (k, _), b in zip(answered, budgets)])
        runs.append(deadline_run(items, answered, rec_unbounded, bounded, budgets, costs))
    shares = lambda key: [run[key] for run in runs]  # noqa: E731
    pooled = lambda key: sum(shares(key)) / len(runs)  # noqa: E731
    deadline = {"met": pooled("met"), "lost": pooled("lost"), "utility_unbounded": u_unbounded,
                "utility_deadline": pooled("utility_deadline"), "utility_given_up": u_unbounded - pooled("utility_deadline"),
                "repeats": len(runs), "queries_per_repeat": len(answered),
                "per_repeat": {k: shares(k) for k in ("met", "lost", "utility_deadline", "forced", "changed")},
                "forced": sum(shares("forced")), "budget_s": {a: BUDGET_X * p for a, p in own_p95.items()},
                "missed_examples": [e for run in runs for e in run["missed_examples"]][:8],
                "changed": sum(shares("changed")), "changed_examples": [e for run in runs for e in run["changed_examples"]][:12]}

    say(f"[{setup.name}] 5. time to first token: gateway (SSE) vs the answering agent directly")
    async with httpx.AsyncClient(timeout=120) as http:
        via = await offered(setup.rate, [lambda t=t: gateway_first_chunk(http, gateway_url, s.name, t) for t in texts])
    firsts = [(k, out) for k, (out, _) in enumerate(via) if isinstance(out, tuple) and out[1]]  # (time to first chunk, agent)
    straight = await offered(setup.rate, [lambda k=k, agent=out[1]: first_piece(s.ask_stream_async(texts[k], alpha=ALPHA, entry=agent,
                                                                                                    must_answer=True))
                                          for k, out in firsts])
    routed = await offered(setup.rate, [lambda k=k: first_piece(s.ask_stream_async(texts[k], alpha=ALPHA)) for k, _ in firsts])
    ttft_gw = [out[0] for _, out in firsts]
    ttft_direct = [out[0] for out, _ in straight if isinstance(out, tuple)]
    ttft_routed = [out[0] for out, _ in routed if isinstance(out, tuple)]

    return {
        "queries": len(items), "rate_qps": setup.rate, "answered": len(answered),
        "answered_by": {agent: len(v) for agent, v in own.items()},
        "hops": dict(sorted(((h, sum(1 for _, a in answered if a.hops == h)) for h in {a.hops for _, a in answered}))),
        "swarm": quantiles(swarm_lat), "direct": quantiles(direct_lat),
        "own_p95_s": own_p95,
        "p50_ratio": metrics.quantile(swarm_lat, 0.5) / metrics.quantile(direct_lat, 0.5),
        "p95_ratio": metrics.quantile(swarm_lat, 0.95) / metrics.quantile(direct_lat, 0.95),
        "per_hop_ms": 1000 * statistics.median(per_hop) if per_hop else None, "per_hop_n": len(per_hop),
        "deadline": deadline,
        "ttft": {"gateway": quantiles(ttft_gw), "direct": quantiles(ttft_direct), "client_routed": quantiles(ttft_routed),
                 "ratio": metrics.quantile(ttft_gw, 0.5) / metrics.quantile(ttft_direct, 0.5),
                 "gateway_share": metrics.quantile(ttft_gw, 0.5) / metrics.quantile(ttft_routed, 0.5),
                 "routing_share": metrics.quantile(ttft_routed, 0.5) / metrics.quantile(ttft_direct, 0.5)},
    }


def deadline_run(items, answered, rec_unbounded, bounded, budgets: list[float], costs: dict[str, float]) -> dict:
    """One deadline series against the unbounded run (its records, `rec_unbounded`): shares met and lost, utility,
    and examples of what it changed."""
    met = [isinstance(o, Answer) and lat <= b for (o, lat), b in zip(bounded, budgets)]
    lost = [not isinstance(o, Answer) for o, _ in bounded]
    rec_bounded = [to_record(items[k], "deadline", ALPHA, o, costs, latency_s=0.0) for (k, _), (o, _) in zip(answered, bounded)]
    decisions = [h.decision for o, _ in bounded if isinstance(o, Answer) for h in o.trace]
    missed = [{"budget_s": round(b, 3), "latency_s": round(lat, 3), "unbounded_path": a.path, "error": getattr(o, "code", ""),
               "trace": [f"{h.agent}:{h.decision}:{h.seconds:.2f}" for h in getattr(o, "trace", [])]}
              for (_, a), (o, lat), b, ok in zip(answered, bounded, budgets, met) if not ok][:8]
    changed = [(u, b, o, lat, budget, a) for u, b, (o, lat), budget, (_, a) in zip(rec_unbounded, rec_bounded, bounded, budgets, answered)
               if (u.agent, u.correct) != (b.agent, b.correct)]  # the queries whose utility the deadline changed
    moved = [{"budget_s": round(budget, 3), "latency_s": round(lat, 3), "unbounded": f"{'/'.join(a.path)} {'right' if u.correct else 'wrong'}",
              "deadline": f"{' '.join(f'{h.agent}:{h.decision}:{h.seconds:.3f}' for h in getattr(o, 'trace', []))} {'right' if b.correct else 'wrong'}"}
             for u, b, o, lat, budget, a in changed][:12]
    return {"met": sum(met) / len(met), "lost": sum(lost) / len(lost), "utility_deadline": metrics.utility(rec_bounded, ALPHA), "forced": decisions.count("forced"),
            "missed_examples": missed, "changed": len(changed), "changed_examples": moved}


def spread(xs: list[float], digits: int = 2) -> str:
    return " ".join(f"{x:.{digits}f}" for x in xs)


def table(results: dict[str, dict]) -> str:
    rows = [("measurement", *results, "goal")]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    rows += [
        ("end-to-end p50: swarm / answering agent directly", *(fmt(r["p50_ratio"]) for r in results.values()), ""),
        ("end-to-end p95: swarm / answering agent directly", *(fmt(r["p95_ratio"]) for r in results.values()), "<= 1.3"),
        ("  swarm p50 / p95 (s)", *(f"{r['swarm']['p50_s']:.2f} / {r['swarm']['p95_s']:.2f}" for r in results.values()), ""),
        ("  direct p50 / p95 (s)", *(f"{r['direct']['p50_s']:.2f} / {r['direct']['p95_s']:.2f}" for r in results.values()), ""),
        ("time to first token, p50: gateway SSE / agent directly", *(fmt(r["ttft"]["ratio"]) for r in results.values()), "<= 1.2"),
        ("  gateway / direct TTFT p50 (s)", *(f"{r['ttft']['gateway']['p50_s']:.2f} / {r['ttft']['direct']['p50_s']:.2f}"
                                            for r in results.values()), ""),
        ("  split: gateway / client-routed x client-routed / direct",
         *(f"{r['ttft']['gateway_share']:.2f} x {r['ttft']['routing_share']:.2f}" for r in results.values()), ""),
        ("overhead per hop (ms, median)", *(fmt(r["per_hop_ms"]) for r in results.values()), ""),
        ("deadline mode (1.5x own p95): share met (all repeats)", *(fmt(r["deadline"]["met"]) for r in results.values()), ">= 0.99"),
        ("  each repeat", *(spread(r["deadline"]["per_repeat"]["met"]) for r in results.values()), ""),
        ("deadline mode: share lost (all repeats)", *(fmt(r["deadline"]["lost"]) for r in results.values()), "0"),
        ("  each repeat", *(spread(r["deadline"]["per_repeat"]["lost"]) for r in results.values()), ""),
        ("deadline mode: utility unbounded / with deadline (mean)", *(f"{r['deadline']['utility_unbounded']:.3f} / {r['deadline']['utility_deadline']:.3f}"
                                                                      for r in results.values()), "within 0.02"),
        ("  with deadline, each repeat", *(spread(r["deadline"]["per_repeat"]["utility_deadline"], 3) for r in results.values()), ""),
        ("queries (answered), offered load (q/s)", *(f"{r['queries']} ({r['answered']}), {r['rate_qps']:g}" for r in results.values()), ""),
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    line = lambda row: " | ".join(str(c).ljust(w) for c, w in zip(row, widths))  # noqa: E731
    return "\n".join([line(rows[0]), " | ".join("-" * w for w in widths), *map(line, rows[1:])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few queries per swarm (a smoke run)")
    parser.add_argument("--only", choices=[s.name for s in setups(True)], nargs="+", help="these swarms only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency.json")
    parser.add_argument("--deadline-repeats", type=int, default=3, help="how many times the deadline series runs (default 3)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    results: dict[str, dict] = {}
    with private_ray(None):
        for setup in setups(args.quick):
            if args.only and setup.name not in args.only:
                continue
            say(f"[{setup.name}] launching")
            s = swarm.launch(setup.topology(), agent_output=False)
            g = None
            try:
                g = serve(s.name, GatewaySettings(port=0, api_keys=(KEY,), rate_per_s=1000.0, burst=1000))
                results[setup.name] = asyncio.run(measure(s, setup, g.url, max(1, args.deadline_repeats)))
            finally:
                if g is not None:
                    g.stop()
                s.shutdown()
    text = table(results)
    print(text)
    keys = {k: {name: (r[k] if k in r else r["deadline"]["met"] if k == "deadline_met" else r["ttft"]["ratio"]) for name, r in results.items()}
            for k in ("p50_ratio", "p95_ratio", "ttft_ratio", "deadline_met", "per_hop_ms")}
    write_summary(args.out, ROOT, text, {**keys, "goals": GOALS, "swarms": results, "wall_s": time.monotonic() - began},
                  program=__file__, args=argv)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
