"""Driver for tests/test_multinode.py: runs as its own process against a two-node Ray cluster.

    python tests/multinode_driver.py launch ADDRESS   launch the swarm, report where each agent runs, ask
    python tests/multinode_driver.py ask ADDRESS      attach by name and ask (after a node was stopped)
    python tests/multinode_driver.py down ADDRESS     stop the swarm

Prints one JSON line on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray

import swarm
from swarm.backends.replay import ReplayTable
from swarm.topology import parse_topology

DATA = Path(__file__).resolve().parent.parent / "topologies" / "data"
TOPOLOGY = """
name: two-node
defaults: {deadline_s: 30, gossip_interval_s: 0.2}
agents:
  - {name: small, cost: 0.1, backend: {kind: replay, table: arith-replay.jsonl, model: m1}, resources: {custom: {node_a: 0.1}}}
  - {name: medium, cost: 0.5, backend: {kind: replay, table: arith-replay.jsonl, model: m3}, resources: {custom: {node_b: 0.1}}}
  - {name: large, cost: 0.9, backend: {kind: replay, table: arith-replay.jsonl, model: m5}, policy: {kind: always_answer},
     resources: {custom: {node_a: 0.1}}}
"""
QUESTIONS = 100


def main(command: str, address: str) -> dict:
    if command == "launch":
        s = swarm.launch(parse_topology(TOPOLOGY, base_dir=DATA), address=address)
        out = {"placement": placement(s)}
    else:
        s = swarm.attach("two-node", address=address)
        if command == "down":
            s.shutdown()
            return {"down": True}
        out = {}
    table = ReplayTable.load(DATA / "arith-replay.jsonl")
    outcomes = s.ask_many(table.queries()[:QUESTIONS], scenario="balance", concurrency=16)
    answers = [o for o in outcomes if isinstance(o, swarm.Answer)]
    out.update(asked=len(outcomes), answered=len(answers), errors=[str(o) for o in outcomes if not isinstance(o, swarm.Answer)][:3],
               agents=sorted({a.agent for a in answers}), status={r.name: r.state for r in s.status()}, entries=s.entries())
    return out


def placement(s: swarm.Swarm) -> dict[str, list[str]]:
    """agent -> the custom resources of the node it runs on."""
    resources = {n["NodeID"]: sorted(k for k in n["Resources"] if k.startswith("node_")) for n in ray.nodes() if n["Alive"]}
    out = {}
    for name in ("small", "medium", "large"):
        node = ray.get(s._handle(name).__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))
        out[name] = resources.get(node, [])
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
