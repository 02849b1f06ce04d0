"""The GPU recipe (five Qwen2.5-Instruct agents under vLLM) is valid; sequential start works on Ray.

The recipe itself cannot run here (no GPU, no hub): this checks it against the schema and its
own arithmetic, which is all CI can do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import swarm
from swarm.topology import load_topology, parse_topology

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "topologies" / "gpu-qwen25-vllm.yaml"


def test_gpu_recipe_validates_against_the_schema():
    topo = load_topology(RECIPE)
    assert topo.defaults.start == "sequential"
    sizes = ["14b", "7b", "3b", "1.5b", "0.5b"]
    assert [a.backend.model for a in topo.agents] == [f"Qwen/Qwen2.5-{s.upper()}-Instruct" for s in sizes]  # largest starts first
    assert [a.name for a in topo.ordered_agents()] == [f"qwen2.5-{s}" for s in reversed(sizes)]  # the cascade runs cheapest first
    assert all(a.backend.kind == "vllm" and a.backend.dtype == "bfloat16" for a in topo.agents)
    for agent in topo.agents:  # the Ray GPU share matches what the engine may take of the GPU
        assert topo.resources_for(agent).num_gpus == agent.backend.gpu_memory_utilization
    assert sum(topo.resources_for(a).num_gpus for a in topo.agents) <= 1.0  # all five fit one GPU
    assert topo.policy_for(topo.agents[0]).kind == "always_answer"
    assert {topo.policy_for(a).kind for a in topo.agents[1:]} == {"confidence"}
    assert "NOT RUN ON GPUs BY THE PROJECT YET" in RECIPE.read_text()


@pytest.mark.ray
def test_sequential_start_launches_in_file_order(ray_cluster):
    data = ROOT / "topologies" / "data"
    text = """name: sequential
defaults: {start: sequential}
agents:
  - {name: big, cost: 0.9, backend: {kind: replay, table: arith-replay.jsonl, model: m5}, policy: {kind: always_answer}}
  - {name: small, cost: 0.1, backend: {kind: replay, table: arith-replay.jsonl, model: m1}}
"""
    s = swarm.launch(parse_topology(text, base_dir=data))
    try:
        assert s.entries() == ["small", "big"]
        assert s.ask("What is 17 + 25?").text == "The answer is: 42"
    finally:
        s.shutdown()
