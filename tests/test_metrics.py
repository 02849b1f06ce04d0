"""Agents' metrics: the node's observer hook (in memory), and Ray's Prometheus endpoint serving them (real Ray)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import ray

import swarm
from swarm.backends.replay import ReplayTable
from swarm.gateway import GatewaySettings, serve
from swarm.node import NodeObserver
from swarm.testing import MemorySwarm, ScriptedBackend
from swarm.topology import parse_topology

DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"
_LABEL = re.compile(r'(\w+)="([^"]*)"')


class Recorder(NodeObserver):
    def __init__(self) -> None:
        self.decisions: Counter[str] = Counter()
        self.done: list[tuple[str, bool, int]] = []

    def decided(self, decision: str) -> None:
        self.decisions[decision] += 1

    def query_done(self, seconds: float, outcome: str, entry: bool, hops: int) -> None:
        assert seconds >= 0
        self.done.append((outcome, entry, hops))


def test_node_observer_sees_every_decision_and_outcome():
    async def scenario():
        s = MemorySwarm()
        recorders = {}
        for name, cost, answers in (("m1", 0.1, {"easy": "1"}), ("m2", 0.5, {"easy": "1", "mid": "2"}), ("m3", 0.9, {"easy": "1", "mid": "2"})):
            s.node(name, cost, ScriptedBackend(answers)).observer = recorders.setdefault(name, Recorder())
        await s.start_all(background=False)
        answers = [await s.ask(q) for q in ("easy", "mid", "hard")]
        return recorders, answers

    recorders, answers = asyncio.run(scenario())
    assert [a.agent for a in answers] == ["m1", "m2", "m3"]
    assert recorders["m1"].decisions == {"answer": 1, "reject": 2}
    assert recorders["m2"].decisions == {"answer": 1, "reject": 1}
    assert recorders["m3"].decisions == {"forced": 1}  # the last agent answers what nobody else would
    assert recorders["m1"].done == [("ok", True, 0), ("ok", True, 1), ("ok", True, 2)]  # hops counted at the entry
    assert recorders["m3"].done == [("ok", False, 0)]


@pytest.mark.ray
def test_agents_export_metrics_to_rays_prometheus_endpoint(ray_cluster):
    rows = "\n".join(
        f"  - {{name: {n}, cost: {c}, backend: {{kind: replay, table: arith-replay.jsonl, model: {m}}}"
        + (", policy: {kind: always_answer}}" if n == "large" else "}")
        for n, c, m in (("small", 0.1, "m1"), ("medium", 0.5, "m3"), ("large", 0.9, "m5"))
    )
    s = swarm.launch(parse_topology(f"name: metrics\nagents:\n{rows}\n", base_dir=DATA))
    try:
        questions = ReplayTable.load(DATA / "arith-replay.jsonl").queries()[:60]
        answers = [a for a in s.ask_many(questions, scenario="performance_first") if isinstance(a, swarm.Answer)]
        assert len(answers) == len(questions)
        rejects = sum(h.decision == "reject" for a in answers for h in a.trace)
        hops = sum(a.hops for a in answers)
        assert rejects > 0

        want = {("decisions", "reject"): rejects, ("decisions", "answered"): len(answers), ("hops_count", ""): len(answers),
                ("hops_sum", ""): hops, ("latency_count", ""): len(answers) + rejects}
        got = _poll_metrics("metrics", lambda m: m == want)  # Ray exports every few seconds
        assert got == want

        # `swarm status` shows the same counts, with state, load, answer rate and latency per agent
        status = {r.name: r for r in s.status()}
        assert all(r.state == "alive" and r.in_flight == 0 for r in status.values())
        assert sum(r.answered for r in status.values()) == len(answers) and sum(r.rejected for r in status.values()) == rejects
        assert status["small"].received == len(questions)
        assert all(r.answer_rate == r.answered / (r.answered + r.rejected) for r in status.values() if r.received)
        assert status["large"].answer_rate == 1.0 and status["small"].p95_s >= status["small"].p50_s > 0

        with serve("metrics", GatewaySettings(port=0)) as gateway:  # the gateway counts requests by route and status
            url = gateway.url + "/v1/chat/completions"
            ok = httpx.post(url, json={"model": "metrics", "messages": [{"role": "user", "content": questions[0]}]}, timeout=30)
            bad = httpx.post(url, json={"model": "metrics"}, timeout=30)
            assert (ok.status_code, bad.status_code) == (200, 400)
            seen = {("gateway", "chat", "200"): 1, ("gateway", "chat", "400"): 1}
            got = _poll_metrics("metrics", lambda m: seen.items() <= m.items())
        assert seen.items() <= got.items()
    finally:
        s.shutdown()


def _poll_metrics(swarm_name: str, done, timeout_s: float = 90) -> dict:
    port = ray.nodes()[0]["MetricsExportPort"]
    end = time.monotonic() + timeout_s
    while True:
        got = _summarise(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text, swarm_name)
        if done(got) or time.monotonic() > end:
            return got
        time.sleep(1)


def _summarise(text: str, swarm_name: str) -> dict:
    out: Counter = Counter()
    for line in text.splitlines():
        if not line.startswith("ray_swarm_") or f'swarm="{swarm_name}"' not in line:
            continue
        name, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(name))
        metric = name.split("{", 1)[0].removeprefix("ray_")
        if metric == "swarm_agent_decisions_total" or metric == "swarm_agent_decisions":
            decision = labels["decision"]
            out[("decisions", "reject" if decision == "reject" else "answered")] += float(value)
        elif metric in ("swarm_query_hops_count", "swarm_query_hops_sum"):
            out[("hops_" + metric.rsplit("_", 1)[1], "")] += float(value)
        elif metric in ("swarm_gateway_requests_total", "swarm_gateway_requests"):
            out[("gateway", labels["route"], labels["status"])] += float(value)
        elif metric == "swarm_agent_latency_s_count":
            out[("latency_count", "")] += float(value)
    return {k: int(v) for k, v in out.items()}
